//! Picking values out of JSON answers.

use serde_json::Value;

/// The `id` field of a JSON object, as text.
#[track_caller]
pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string id in {value}"))
        .to_owned()
}

/// The values of `field` in every object of a JSON array.
pub fn pluck(array: &Value, field: &str) -> Vec<String> {
    array
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of a session view's participants, in order.
pub fn participant_ids(session: &Value) -> Vec<String> {
    session["participants"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["agent"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The strings of a JSON array (e.g. `recipients`).
pub fn strings(array: &Value) -> Vec<String> {
    array
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

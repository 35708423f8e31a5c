//! The web console, served from the binary: the agents' console at `/`, the
//! customer's page at `/customer`, the administrators' desk at `/admin`.
//! Pages are small HTML shells (`no-cache`, revalidated by ETag); what they
//! load lives under `/assets/<build>/…`, a path that changes whenever any
//! asset does, so those answers are `immutable`. Every answer carries a
//! strict Content-Security-Policy: scripts and styles only from this origin
//! (no inline code), API calls only to this origin, framing only by
//! `console.frame_ancestors`. The pages speak the public API, nothing else.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, guard, web};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// Every file under `web/`, by path relative to it (written by `build.rs`).
pub static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The pages: path → the file that is its shell.
pub const PAGES: &[(&str, &str)] = &[
    ("/", "agent.html"),
    ("/customer", "customer.html"),
    ("/admin", "admin.html"),
];

/// Where a page's shell names the asset folder; replaced by
/// `/assets/<build>` when the page is served.
const ASSETS_MARK: &str = "%ASSETS%";

/// A year: how long a browser may keep an asset (its path changes with it).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The console, as this binary serves it.
struct Build {
    /// Names this set of assets: a digest of every path and its bytes.
    id: String,
    /// Assets by path.
    assets: HashMap<&'static str, &'static [u8]>,
    /// Pages by URL path: the HTML with the asset folder filled in, and its ETag.
    pages: HashMap<&'static str, (String, String)>,
}

static BUILD: LazyLock<Build> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    for (path, bytes) in FILES {
        digest.update((path.len() as u64).to_le_bytes());
        digest.update(path.as_bytes());
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(bytes);
    }
    let id = hex(&digest.finalize()[..8]);
    let assets: HashMap<&str, &[u8]> = FILES.iter().copied().collect();
    let prefix = format!("/assets/{id}");
    let pages = PAGES
        .iter()
        .map(|(url, file)| {
            let html = assets
                .get(file)
                .map(|b| String::from_utf8_lossy(b).replace(ASSETS_MARK, &prefix))
                .unwrap_or_default();
            let etag = format!("\"{}\"", hex(&Sha256::digest(html.as_bytes())[..8]));
            (*url, (html, etag))
        })
        .collect();
    Build { id, assets, pages }
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The asset folder of this build, e.g. `/assets/1f2e3d4c5b6a7988`.
pub fn assets_prefix() -> String {
    format!("/assets/{}", BUILD.id)
}

/// The Content-Security-Policy of every console answer.
pub fn content_security_policy(frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors {frame_ancestors}"
    )
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let read = || guard::Any(guard::Get()).or(guard::Head());
    for (url, _) in PAGES {
        cfg.route(url, web::route().guard(read()).to(page));
    }
    cfg.route(
        "/assets/{build}/{path:.+}",
        web::route().guard(read()).to(asset),
    );
}

/// Whether `path` is one of the console's (for 405 on other methods).
pub fn is_console_path(path: &str) -> bool {
    PAGES.iter().any(|(url, _)| *url == path) || path.starts_with("/assets/")
}

/// Headers every console answer carries: `nosniff` on all; the document
/// policies on what a browser can render as a document (pages, the SVG
/// opened on its own), not on scripts and styles, where they mean nothing
/// and would cost ≈ 300 bytes on each of a first load's files.
fn secured(state: &AppState, mut res: HttpResponse, document: bool) -> HttpResponse {
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !document {
        return res;
    }
    let csp = content_security_policy(&state.node.settings.console.frame_ancestors);
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    // The customer's token travels in the page's fragment, which browsers
    // never send; no Referer at all keeps even the path to ourselves.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.node.settings.console.enabled {
        return Err(ApiError::not_found("route"));
    }
    let Some((html, etag)) = BUILD.pages.get(req.path()) else {
        return Err(ApiError::not_found("route"));
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    let res = if fresh {
        res.finish()
    } else {
        res.content_type("text/html; charset=utf-8")
            .body(html.clone())
    };
    Ok(secured(&state, res, true))
}

async fn asset(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (build, file) = path.into_inner();
    // An older build's path is not served with today's bytes: that answer
    // would be cached for a year under the wrong name.
    if !state.node.settings.console.enabled || build != BUILD.id {
        return Err(ApiError::not_found("asset"));
    }
    let Some(bytes) = BUILD.assets.get(file.as_str()) else {
        return Err(ApiError::not_found("asset"));
    };
    let res = HttpResponse::Ok()
        .content_type(media_type(&file))
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .body(*bytes);
    let document = !(file.ends_with(".js") || file.ends_with(".mjs") || file.ends_with(".css"));
    Ok(secured(&state, res, document))
}

/// The media type of an asset, by its extension.
pub fn media_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_its_shell_and_names_the_asset_folder() {
        for (url, file) in PAGES {
            let (html, _) = &BUILD.pages[url];
            assert!(!html.is_empty(), "{file} is missing under web/");
            assert!(html.contains(&assets_prefix()), "{file} loads nothing");
            assert!(!html.contains(ASSETS_MARK), "{file}");
        }
    }

    /// `web/vendor/README.md` records each vendored file's sha256: the
    /// bytes served are the ones that were checked when they were copied.
    #[test]
    fn vendored_files_are_the_ones_recorded() {
        let manifest = include_str!("../../web/vendor/README.md");
        let mut checked = 0;
        for row in manifest.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
            let (file, sum) = (cells[1], cells[4]);
            let bytes = BUILD
                .assets
                .get(format!("vendor/{file}").as_str())
                .unwrap_or_else(|| panic!("vendor/{file} is recorded but not embedded"));
            assert_eq!(hex(&Sha256::digest(bytes)), sum, "vendor/{file}");
            checked += 1;
        }
        let vendored = FILES
            .iter()
            .filter(|(p, _)| p.starts_with("vendor/") && p.ends_with(".mjs"))
            .count();
        assert_eq!(checked, vendored, "every vendored module is recorded");
        assert!(checked >= 3);
    }

    #[test]
    fn assets_are_served_with_their_media_types() {
        assert_eq!(media_type("agent.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            media_type("vendor/preact.mjs"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(media_type("console.css"), "text/css; charset=utf-8");
        assert_eq!(media_type("icon.svg"), "image/svg+xml");
        assert_eq!(media_type("LICENSE"), "application/octet-stream");
    }
}

//! The web console as a browser meets it, without a browser: every page and
//! every asset it loads is served with its media type, a strict CSP and the
//! right caching (pages revalidated by ETag, assets immutable under a path
//! that names the build), and it can be switched off.

use std::collections::BTreeSet;

use awc::http::Method;
use collabd::http::console::{FILES, PAGES, assets_prefix};

use crate::common::TestApp;
use crate::common::http::assert_problem;

/// Every `/assets/…` path an HTML page names in `src=` or `href=`.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            if let Some(end) = part.find('"') {
                found.push(part[..end].to_owned());
            }
        }
    }
    found
}

/// The module specifiers a script imports by a literal string: `from
/// "./x.js"` and `import("./x.js")`.
fn imports(js: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["from '", "from \"", "from\"", "import('", "import(\""] {
        for part in js.split(marker).skip(1) {
            if let Some(end) = part.find(['\'', '"']) {
                found.push(part[..end].to_owned());
            }
        }
    }
    found
}

/// `spec` relative to the asset `from` (both under `web/`).
fn resolve(from: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for piece in spec.split('/') {
        match piece {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn is_script(path: &str) -> bool {
    path.ends_with(".js") || path.ends_with(".mjs")
}

#[actix_rt::test]
async fn every_page_and_everything_it_loads_is_served_with_its_media_type() {
    let app = TestApp::spawn().await;
    let prefix = assets_prefix();
    let mut todo: Vec<String> = Vec::new();
    for (url, _) in PAGES {
        let page = app.call(Method::GET, url, None, None).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text);
        assert_eq!(page.content_type, "text/html; charset=utf-8", "{url}");
        let assets = referenced_assets(&page.text);
        assert!(
            assets.iter().any(|a| a.ends_with(".js")),
            "{url} loads no script"
        );
        for asset in assets {
            let file = asset
                .strip_prefix(&format!("{prefix}/"))
                .unwrap_or_else(|| panic!("{url} names {asset}, not an asset of this build"));
            todo.push(file.to_owned());
        }
    }
    // Follow every script's imports: a module that is not served would
    // break the page in the browser only.
    let mut served = BTreeSet::new();
    while let Some(file) = todo.pop() {
        if !served.insert(file.clone()) {
            continue;
        }
        let reply = app
            .call(Method::GET, &format!("{prefix}/{file}"), None, None)
            .await;
        assert_eq!(reply.status, 200, "{file}: {}", reply.text);
        let want = if is_script(&file) {
            "text/javascript; charset=utf-8"
        } else if file.ends_with(".css") {
            "text/css; charset=utf-8"
        } else if file.ends_with(".svg") {
            "image/svg+xml"
        } else {
            panic!("a page loads {file}: which media type?")
        };
        assert_eq!(reply.content_type, want, "{file}");
        assert_eq!(
            reply.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{file}"
        );
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{file}");
        if file.ends_with(".svg") {
            // Opened on its own an SVG is a document: it keeps the policy.
            assert!(
                reply
                    .header("content-security-policy")
                    .starts_with("default-src 'none'"),
                "{file}"
            );
        }
        if is_script(&file) {
            for spec in imports(&reply.text) {
                assert!(
                    spec.starts_with("./") || spec.starts_with("../"),
                    "{file} imports {spec:?}: a bare specifier needs an import map, which the CSP refuses"
                );
                todo.push(resolve(&file, &spec));
            }
        }
    }
    // The words of each language are imported by a computed path.
    for lang in ["de", "en"] {
        for words in [format!("words/{lang}.js"), format!("words/admin-{lang}.js")] {
            assert!(
                FILES.iter().any(|(path, _)| *path == words),
                "{words} is missing"
            );
        }
    }
    assert!(served.contains("vendor/preact.mjs"), "{served:?}");
}

#[actix_rt::test]
async fn pages_carry_a_strict_csp_and_are_revalidated_by_etag() {
    let app = TestApp::spawn().await;
    for (url, _) in PAGES {
        let page = app.call(Method::GET, url, None, None).await;
        let csp = page.header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{url}: {csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe"), "{url}: {csp}");
        assert_eq!(page.header("x-content-type-options"), "nosniff");
        assert_eq!(page.header("referrer-policy"), "no-referrer");
        assert_eq!(page.header("cache-control"), "no-cache");
        // No inline script or style for the CSP to refuse.
        assert!(!page.text.contains("<script>") && !page.text.contains("<style"));
        assert!(!page.text.contains(" style="), "{url}");
        let etag = page.header("etag");
        assert!(
            etag.starts_with('"') && etag.len() > 2,
            "{url}: etag {etag:?}"
        );

        let again = app
            .call_with_headers(Method::GET, url, &[("If-None-Match", etag.as_str())])
            .await;
        assert_eq!(again.status, 304, "{url}");
        assert!(again.text.is_empty());
        assert_eq!(again.header("etag"), etag);
        let changed = app
            .call_with_headers(Method::GET, url, &[("If-None-Match", "\"other\"")])
            .await;
        assert_eq!(changed.status, 200, "{url}");
    }
}

#[actix_rt::test]
async fn an_asset_of_another_build_or_an_unknown_one_is_not_found() {
    let app = TestApp::spawn().await;
    let old = app
        .call(Method::GET, "/assets/0123456789abcdef/agent.js", None, None)
        .await;
    assert_problem(&old, 404, "not_found");
    let missing = app
        .call(
            Method::GET,
            &format!("{}/nope.js", assets_prefix()),
            None,
            None,
        )
        .await;
    assert_problem(&missing, 404, "not_found");
    let post = app.call(Method::POST, "/", None, None).await;
    assert_problem(&post, 405, "method_not_allowed");
    assert_eq!(post.allow, "GET, HEAD");
}

#[actix_rt::test]
async fn the_console_can_be_switched_off_and_framed_by_a_host_product() {
    let off = TestApp::spawn_with(|s| s.console.enabled = false).await;
    for (url, _) in PAGES {
        assert_problem(
            &off.call(Method::GET, url, None, None).await,
            404,
            "not_found",
        );
    }
    let asset = off
        .call(
            Method::GET,
            &format!("{}/agent.js", assets_prefix()),
            None,
            None,
        )
        .await;
    assert_problem(&asset, 404, "not_found");
    assert_eq!(
        off.call(Method::GET, "/healthz", None, None).await.status,
        200
    );

    let framed = TestApp::spawn_with(|s| {
        s.console.frame_ancestors = "'self' https://support.example.com".into();
    })
    .await;
    let page = framed.call(Method::GET, "/", None, None).await;
    assert!(
        page.header("content-security-policy")
            .ends_with("frame-ancestors 'self' https://support.example.com"),
        "{}",
        page.header("content-security-policy")
    );
}

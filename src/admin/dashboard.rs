//! The dashboard: one static page, embedded in the binary, that talks only to the
//! admin API.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::header::{self, HeaderValue};
use http::StatusCode;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// Scripts, styles and API calls from this origin only; no inline code, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard at `/admin/ui`: overview charts, spend by team / key / model, keys
/// (create, rotate, disable, revoke), channels and recent requests.
///
/// The page and its script and stylesheet are embedded in the binary (no build step,
/// no CDN); the browser calls the admin API on the same origin, so merge this router
/// next to [`Admin::into_router`](super::Admin::into_router). It logs in with an admin
/// (or viewer) key, kept in the tab's `sessionStorage` only; the routes here serve
/// static files and need no key, while every figure comes from the authenticated API.
///
/// ```no_run
/// use tollgate::admin::{dashboard, Admin};
/// use tollgate::auth::{KeyAuthenticator, KeySecret, Keys, MemoryKeyStore};
///
/// let keys = Keys::new(MemoryKeyStore::new());
/// let master = KeySecret::from_plaintext("sk-master-change-me");
/// let auth = KeyAuthenticator::new(keys.clone()).master_key(&master);
/// let app: axum::Router = Admin::new(auth, keys).into_router().merge(dashboard());
/// ```
pub fn dashboard() -> Router {
    Router::new()
        .route(
            "/admin/ui",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/admin/ui/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/admin/ui/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/admin/ui/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = Response::new(axum::body::Body::from(body));
    *res.status_mut() = StatusCode::OK;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidate on every load, so a new gateway version never runs an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_asset(path: &str) -> (StatusCode, http::HeaderMap, String) {
        let res = dashboard()
            .oneshot(
                http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_a_strict_policy() {
        for (path, kind, needle) in [
            ("/admin/ui", "text/html", "/admin/ui/app.js"),
            ("/admin/ui/", "text/html", "/admin/ui/app.css"),
            ("/admin/ui/app.js", "text/javascript", "/admin/usage"),
            ("/admin/ui/app.css", "text/css", ".chart"),
        ] {
            let (status, headers, body) = get_asset(path).await;
            assert_eq!(status, 200, "{path}");
            assert!(headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind));
            assert!(headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"));
            assert!(body.contains(needle), "{path} holds {needle}");
        }
        let (status, _, _) = get_asset("/admin/ui/missing.js").await;
        assert_eq!(status, 404);
    }

    #[test]
    fn the_script_never_writes_html_from_data() {
        // Every API value goes through textContent; innerHTML would let a key name
        // or a model string run script in an admin's browser.
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML"));
        assert!(
            !INDEX.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
    }
}

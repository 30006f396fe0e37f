//! Which web pages may open links: the `Origin` check of an upgrade, done first, with or
//! without auth.
//!
//! A browser attaches the page's origin to every WebSocket upgrade it makes, and any page
//! the user opens can make one: without this check a hostile page could drive a peer from
//! the user's browser (with the user's network position, and the user's cookies or token if
//! the page can reach them). Native clients send no `Origin` and are not bound by it.

use actix_web::HttpRequest;
use actix_web::http::header;

/// The origins allowed to open links; none by default.
#[derive(Debug, Default, Clone)]
pub(crate) struct Origins {
    allowed: Vec<String>,
}

impl Origins {
    pub(crate) fn allow(&mut self, origin: String) {
        self.allowed.push(origin);
    }

    /// Whether `request` may go on: it carries no `Origin` (not a browser), or one on the
    /// list, compared exactly (scheme, host and port, as the browser serializes them).
    pub(crate) fn admits(&self, request: &HttpRequest) -> bool {
        let mut origins = request.headers().get_all(header::ORIGIN).peekable();
        if origins.peek().is_none() {
            return true;
        }
        // More than one `Origin`, or one that is not text, is no origin we listed.
        let origin = match (origins.next(), origins.next()) {
            (Some(origin), None) => origin.to_str().ok(),
            _ => None,
        };
        let allowed = origin.is_some_and(|origin| self.allowed.iter().any(|ok| ok == origin));
        if !allowed {
            tracing::info!(
                target: "distributed_scope::auth",
                origin,
                remote = ?request.peer_addr(),
                "upgrade refused: origin not allowed"
            );
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn requests_without_origin_pass_and_foreign_ones_do_not() {
        let mut origins = Origins::default();
        assert!(origins.admits(&TestRequest::default().to_http_request()));
        let page = |origin: &str| {
            TestRequest::default()
                .insert_header((header::ORIGIN, origin))
                .to_http_request()
        };
        assert!(!origins.admits(&page("https://evil.example")));
        origins.allow("https://app.example".to_owned());
        assert!(origins.admits(&page("https://app.example")));
        assert!(!origins.admits(&page("https://app.example:8443")));
        assert!(!origins.admits(&page("null")));
        let twice = TestRequest::default()
            .append_header((header::ORIGIN, "https://app.example"))
            .append_header((header::ORIGIN, "https://evil.example"))
            .to_http_request();
        assert!(!origins.admits(&twice));
    }
}

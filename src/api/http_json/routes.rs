//! The HTTP/JSON paths (in the style of `google.api.http` annotations) and the RPC each one is.

use http::Method;

/// Where a value of the request message comes from besides the body or the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The RPC's name in `flytenotify.v1.NotificationService`.
    pub rpc: &'static str,
    /// GET reads the request message from the query string, POST from the JSON body.
    pub method: Method,
    /// A path segment bound to a request field, e.g. `{id}` of `/api/v1/deliveries/{id}`.
    pub path_field: Option<(&'static str, String)>,
}

/// One row of the table: the method, the path with at most one `{field}` segment, the RPC.
struct Row {
    method: Method,
    prefix: &'static str,
    /// (request field, what follows the segment) for paths with a `{}` segment.
    param: Option<(&'static str, &'static str)>,
    rpc: &'static str,
}

const fn fixed(method: Method, path: &'static str, rpc: &'static str) -> Row {
    Row {
        method,
        prefix: path,
        param: None,
        rpc,
    }
}

const fn bound(
    method: Method,
    prefix: &'static str,
    field: &'static str,
    suffix: &'static str,
    rpc: &'static str,
) -> Row {
    Row {
        method,
        prefix,
        param: Some((field, suffix)),
        rpc,
    }
}

/// Every RPC has one row; the README's "HTTP/JSON" table is this table.
const ROWS: &[Row] = &[
    fixed(Method::POST, "/api/v1/enqueue", "Enqueue"),
    fixed(Method::GET, "/api/v1/deliveries", "ListPending"),
    fixed(Method::POST, "/api/v1/deliveries:redrive", "Redrive"),
    fixed(Method::POST, "/api/v1/deliveries:discard", "Discard"),
    bound(
        Method::GET,
        "/api/v1/deliveries/",
        "delivery_id",
        "",
        "GetDelivery",
    ),
    fixed(Method::POST, "/api/v1/preview", "Preview"),
    fixed(Method::POST, "/api/v1/preview-digest", "PreviewDigest"),
    fixed(Method::POST, "/api/v1/send-test", "SendTest"),
    fixed(Method::POST, "/api/v1/silences", "CreateSilence"),
    fixed(Method::GET, "/api/v1/silences", "ListSilences"),
    bound(
        Method::POST,
        "/api/v1/silences/",
        "silence_id",
        ":expire",
        "ExpireSilence",
    ),
    fixed(Method::GET, "/api/v1/expectations", "ListExpectations"),
    fixed(Method::POST, "/api/v1/run-events", "EnqueueRunEvent"),
    fixed(Method::POST, "/api/v1/action-paused", "EnqueueActionPaused"),
    fixed(
        Method::GET,
        "/api/v1/delivery-configs",
        "ListDeliveryConfigs",
    ),
    fixed(Method::GET, "/api/v1/rules", "ListRules"),
];

/// The prefix of every path served here.
pub const API_PREFIX: &str = "/api/";

/// The RPCs by name, for the gRPC-style path `POST /flytenotify.v1.NotificationService/<Rpc>`.
pub fn rpc_names() -> impl Iterator<Item = &'static str> {
    ROWS.iter().map(|r| r.rpc)
}

/// What a path and method resolve to: a route, a path served only with another method, or nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    Found(Route),
    /// The path exists; these methods are the ones it takes.
    WrongMethod(Vec<Method>),
    NotFound,
}

fn matches(row: &Row, path: &str) -> Option<Option<(&'static str, String)>> {
    match row.param {
        None => (path == row.prefix).then_some(None),
        Some((field, suffix)) => {
            let rest = path.strip_prefix(row.prefix)?;
            let value = rest.strip_suffix(suffix)?;
            // One segment: no slash, not empty, and not another row's verb (`deliveries:redrive`
            // is matched by its own row first, but `/deliveries/x:redrive` is no id).
            if value.is_empty() || value.contains('/') || (suffix.is_empty() && value.contains(':'))
            {
                return None;
            }
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()?
                .into_owned();
            Some(Some((field, decoded)))
        }
    }
}

pub fn resolve(method: &Method, path: &str) -> Resolved {
    let mut allowed = Vec::new();
    for row in ROWS {
        if let Some(path_field) = matches(row, path) {
            if row.method == method {
                return Resolved::Found(Route {
                    rpc: row.rpc,
                    method: row.method.clone(),
                    path_field,
                });
            }
            allowed.push(row.method.clone());
        }
    }
    if allowed.is_empty() {
        Resolved::NotFound
    } else {
        Resolved::WrongMethod(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: Method, path: &str) -> Route {
        match resolve(&method, path) {
            Resolved::Found(route) => route,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_to_their_rpc_and_bind_the_id() {
        assert_eq!(found(Method::POST, "/api/v1/enqueue").rpc, "Enqueue");
        assert_eq!(found(Method::GET, "/api/v1/deliveries").rpc, "ListPending");
        assert_eq!(
            found(Method::POST, "/api/v1/deliveries:redrive").rpc,
            "Redrive"
        );
        let get = found(Method::GET, "/api/v1/deliveries/d%2D1");
        assert_eq!(get.rpc, "GetDelivery");
        assert_eq!(get.path_field, Some(("delivery_id", "d-1".to_string())));
        let expire = found(Method::POST, "/api/v1/silences/s1:expire");
        assert_eq!(expire.rpc, "ExpireSilence");
        assert_eq!(expire.path_field, Some(("silence_id", "s1".to_string())));
        assert_eq!(found(Method::GET, "/api/v1/silences").rpc, "ListSilences");
        assert_eq!(found(Method::POST, "/api/v1/silences").rpc, "CreateSilence");
    }

    #[test]
    fn other_paths_and_methods_are_told_apart() {
        assert_eq!(
            resolve(&Method::GET, "/api/v1/enqueue"),
            Resolved::WrongMethod(vec![Method::POST])
        );
        assert_eq!(
            resolve(&Method::DELETE, "/api/v1/silences"),
            Resolved::WrongMethod(vec![Method::POST, Method::GET])
        );
        for path in [
            "/api/v1/deliveries/",
            "/api/v1/deliveries/a/b",
            "/api/v1/deliveries/a:redrive",
            "/api/v1/silences/:expire",
            "/api/v2/enqueue",
        ] {
            assert_eq!(resolve(&Method::GET, path), Resolved::NotFound, "{path}");
            assert_eq!(resolve(&Method::POST, path), Resolved::NotFound, "{path}");
        }
    }

    #[test]
    fn every_rpc_of_the_service_has_a_path() {
        let pool = super::super::transcode::pool();
        let service = pool
            .get_service_by_name("flytenotify.v1.NotificationService")
            .unwrap();
        let mut served: Vec<&str> = rpc_names().collect();
        served.sort();
        let mut declared: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
        declared.sort();
        assert_eq!(served, declared);
    }
}

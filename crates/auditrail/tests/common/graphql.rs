//! A real GraphQL server (async-graphql) implementing a handful of Prophecy's operations,
//! for the capture gateway's tests, its benchmark and the README's tour
//! (`cargo run -p auditrail --example prophecy-graphql`). It keeps every HTTP request it
//! receives, so a test can check what reached it and that it arrived unchanged.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "shared by tests, a benchmark and an example, each using part; a panic is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{
    BatchRequest, Context, EmptySubscription, Error, InputObject, Object, Schema, SimpleObject,
};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One HTTP request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Passwords `setPassword` was given (so a test knows what the secret was).
    pub passwords: Arc<Mutex<Vec<String>>>,
    /// CPU work `addProject` does before answering, in rounds of SHA-256 over 64 bytes
    /// (0: none), for a benchmark to stand in for an upstream that does real work.
    pub work_rounds: u32,
}

/// `rounds` of SHA-256 over 64 bytes, chained so none can be skipped.
pub fn work(rounds: u32) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = [7u8; 32];
    for _ in 0..rounds {
        let mut d = Sha256::new();
        d.update(h);
        d.update(h);
        h = d.finalize().into();
    }
    h
}

#[derive(SimpleObject)]
struct Project {
    id: String,
    name: String,
}

#[derive(SimpleObject)]
struct Pipeline {
    id: String,
}

#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
enum ForkMode {
    Single,
    Multi,
}

#[derive(InputObject)]
#[graphql(name = "UDFInput")]
struct UdfInput {
    name: String,
    description: Option<String>,
    code: Option<String>,
}

struct Query;

#[Object]
impl Query {
    async fn get_details(&self, project_id: String) -> Project {
        Project {
            id: project_id,
            name: "demo".into(),
        }
    }

    async fn table_query_pipeline(
        &self,
        project_id: Option<String>,
        uid: Option<String>,
        sort_order: Option<String>,
        sort_column: Option<String>,
    ) -> Vec<Pipeline> {
        let _ = (sort_order, sort_column);
        vec![Pipeline {
            id: format!("{}-p1", project_id.or(uid).unwrap_or_default()),
        }]
    }

    /// Not in the catalog: never recorded.
    async fn whoami(&self) -> String {
        "someone".into()
    }
}

struct Mutation;

#[Object]
impl Mutation {
    async fn add_project(
        &self,
        ctx: &Context<'_>,
        name: String,
        language: Option<String>,
        fork_mode: Option<ForkMode>,
        owner_uid: Option<String>,
        main_branch_modification_allowed: Option<bool>,
    ) -> Result<Project, Error> {
        let _ = (language, owner_uid, main_branch_modification_allowed);
        let _multi = fork_mode == Some(ForkMode::Multi);
        let rounds = ctx.data::<Upstream>().map_or(0, |u| u.work_rounds);
        if rounds > 0 {
            std::hint::black_box(work(rounds));
        }
        if name == "taken" {
            return Err(Error::new("a project with this name exists"));
        }
        Ok(Project {
            id: format!("p-{name}"),
            name,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn release_project(
        &self,
        #[graphql(name = "projectID")] project_id: String,
        branch: Option<String>,
        message: Option<String>,
        version: Option<String>,
        #[graphql(name = "CommitHash")] commit_hash: Option<String>,
    ) -> String {
        let _ = (branch, message, commit_hash);
        format!("{project_id}@{}", version.unwrap_or_default())
    }

    async fn set_password(&self, ctx: &Context<'_>, uid: String, new_password: String) -> bool {
        let up = ctx.data_unchecked::<Upstream>();
        up.passwords.lock().unwrap().push(new_password);
        !uid.is_empty()
    }

    #[graphql(name = "addUDFBulk")]
    async fn add_udf_bulk(
        &self,
        #[graphql(name = "projectUID")] project_uid: String,
        udfs: Vec<UdfInput>,
    ) -> i32 {
        let _ = project_uid;
        udfs.iter()
            .filter(|u| u.description.is_some() || u.code.is_some() || !u.name.is_empty())
            .count() as i32
    }

    /// `sleepMs` (not a catalog parameter) makes the upstream slow, for tests that stop
    /// the gateway while the upstream is answering.
    async fn checkout(
        &self,
        project_id: Option<String>,
        branch_name: String,
        #[graphql(name = "projectUID")] project_uid: Option<String>,
        sleep_ms: Option<i32>,
    ) -> String {
        if let Some(ms) = sleep_ms {
            tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
        }
        format!(
            "{}:{branch_name}",
            project_id.or(project_uid).unwrap_or_default()
        )
    }
}

type ProphecySchema = Schema<Query, Mutation, EmptySubscription>;

async fn graphql(
    State((schema, up)): State<(ProphecySchema, Upstream)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    up.received.lock().unwrap().push(Received {
        method: method.clone(),
        headers: headers.clone(),
        query: query.clone(),
        body: body.clone(),
    });
    // The host product's own gatekeeping, refusing a request outright.
    if headers.contains_key("x-test-reject") {
        let body = serde_json::json!({"errors": [{"message": "forbidden by the host product"}]});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let batch = if method == Method::GET {
        match async_graphql::http::parse_query_string(query.as_deref().unwrap_or("")) {
            Ok(r) => BatchRequest::Single(r),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    } else if headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/graphql"))
    {
        BatchRequest::Single(async_graphql::Request::new(String::from_utf8_lossy(&body)))
    } else {
        match serde_json::from_slice::<BatchRequest>(&body) {
            Ok(b) => b,
            Err(e) => {
                let body =
                    serde_json::json!({"errors": [{"message": format!("invalid request: {e}")}]});
                return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
            }
        }
    };
    let resp = schema.execute_batch(batch).await;
    (
        [("content-type", "application/json")],
        serde_json::to_vec(&resp).unwrap(),
    )
        .into_response()
}

/// Starts the server on a port-0 listener; returns its GraphQL endpoint URL.
pub async fn start(up: Upstream) -> String {
    start_on("127.0.0.1:0", up).await
}

/// Starts the server on `addr`; returns its GraphQL endpoint URL.
pub async fn start_on(addr: &str, up: Upstream) -> String {
    let schema = Schema::build(Query, Mutation, EmptySubscription)
        .data(up.clone())
        .finish();
    let app = axum::Router::new()
        .route("/graphql", axum::routing::any(graphql))
        .route("/other", axum::routing::get(|| async { "not graphql" }))
        .with_state((schema, up));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/graphql")
}

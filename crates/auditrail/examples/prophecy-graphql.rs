//! A sample GraphQL API with a handful of Prophecy's operations (`addProject`,
//! `releaseProject`, `setPassword`, `addUDFBulk`, `tableQueryPipeline`, `checkout`,
//! `getDetails`, and `whoami`, which no catalog names), to put `auditrail gateway` in
//! front of: `cargo run -p auditrail --example prophecy-graphql -- 127.0.0.1:4000`.
#![expect(clippy::unwrap_used, reason = "an example")]

#[path = "../tests/common/graphql.rs"]
mod graphql;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".into());
    let url = graphql::start_on(&addr, graphql::Upstream::default()).await;
    println!("sample GraphQL API on {url}");
    tokio::signal::ctrl_c().await.unwrap();
}

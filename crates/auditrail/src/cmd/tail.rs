//! `auditrail tail`: follows an org's events live, one JSON line each (the event as
//! stored, plus `leaf_hash`), from a running server's `/v1/events/stream`. It reconnects
//! with the last seq it printed whenever the stream ends (a restart, a cutoff for
//! falling behind), so it misses and repeats nothing.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The org to follow (the token's own org)
    #[arg(long)]
    org: String,
    /// URL of the running auditrail
    #[arg(long, env = "AUDITRAIL_URL")]
    url: String,
    /// A viewer or admin key of the org
    #[arg(long, env = "AUDITRAIL_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    actor_id: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long)]
    resource_id: Option<String>,
    #[arg(long)]
    scope_id: Option<String>,
    /// The search syntax, e.g. `actor:u-42 -action:login`
    #[arg(long)]
    q: Option<String>,
    /// Start after this seq (without it: at the head, only new events)
    #[arg(long)]
    after: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut url = reqwest::Url::parse(&format!(
        "{}/v1/events/stream",
        args.url.trim_end_matches('/')
    ))
    .with_context(|| format!("--url {} is not a URL", args.url))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("org", &args.org);
        for (k, v) in [
            ("actor_id", &args.actor_id),
            ("action", &args.action),
            ("resource_type", &args.resource_type),
            ("resource_id", &args.resource_id),
            ("scope_id", &args.scope_id),
            ("q", &args.q),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("cannot build HTTP client")?;
    let mut last = args.after;
    let mut failures = 0u32;
    loop {
        match follow(&http, &url, &args.token, &mut last).await {
            Ok(Ended::Refused(msg)) => bail!(msg),
            Ok(Ended::Closed(why)) => {
                failures = 0;
                eprintln!("auditrail tail: stream ended ({why}); resuming after {last:?}");
            }
            Err(e) => {
                failures += 1;
                eprintln!("auditrail tail: {e:#}; retrying");
            }
        }
        // 0.2 s, doubling to 10 s while the server stays away.
        let wait =
            Duration::from_millis(200 * 2u64.pow(failures.min(6))).min(Duration::from_secs(10));
        tokio::time::sleep(wait).await;
    }
}

enum Ended {
    /// The server said no (bad filter, wrong key, 4xx): retrying would not help.
    Refused(String),
    Closed(String),
}

async fn follow(
    http: &reqwest::Client,
    url: &reqwest::Url,
    token: &str,
    last: &mut Option<u64>,
) -> anyhow::Result<Ended> {
    let mut req = http.get(url.clone()).bearer_auth(token);
    if let Some(seq) = last {
        req = req.header("Last-Event-ID", seq.to_string());
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        let text = format!("{url} answered {status}: {msg}");
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(Ended::Refused(text));
        }
        bail!(text);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut out = std::io::stdout();
    loop {
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let (mut event, mut id, mut data) = ("message", None, String::new());
            for line in block.lines() {
                match line.split_once(": ") {
                    Some(("event", v)) => event = if v == "cutoff" { "cutoff" } else { "other" },
                    Some(("id", v)) => id = v.parse::<u64>().ok(),
                    Some(("data", v)) => data.push_str(v),
                    _ => {}
                }
            }
            if let Some(id) = id {
                *last = Some(id);
            }
            match event {
                "cutoff" => return Ok(Ended::Closed(data)),
                "message" if !data.is_empty() => {
                    writeln!(out, "{data}")?;
                    out.flush()?;
                }
                _ => {}
            }
        }
        match resp.chunk().await.context("the stream broke")? {
            Some(c) => buf.extend_from_slice(&c),
            None => return Ok(Ended::Closed("closed by the server".into())),
        }
    }
}

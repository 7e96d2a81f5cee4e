//! Talking to a running auditrail over HTTP.

use anyhow::{Context, bail};
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let token = token
            .context("--token (or AUDITRAIL_TOKEN) is required with --url")?
            .to_owned();
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build HTTP client")?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// POSTs JSON; retries while the server says it is overloaded.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(body).context("cannot write the request")?;
        match self.post_json_bytes(path, bytes.into()).await? {
            Ok(value) => Ok(value),
            Err((status, value)) => {
                let msg = value["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed");
                bail!("{}{path} answered {status}: {msg}", self.base)
            }
        }
    }

    /// POSTs a JSON body already written; retries while the server says it is
    /// overloaded. `Ok(Err((status, answer)))` is the server refusing it, with its JSON
    /// answer (`{"error": {...}}`), so that the caller can read the error's details.
    pub async fn post_json_bytes(
        &self,
        path: &str,
        body: bytes::Bytes,
    ) -> anyhow::Result<Result<Value, (reqwest::StatusCode, Value)>> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..30u32 {
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 29 {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                continue;
            }
            let value: Value = resp
                .json()
                .await
                .with_context(|| format!("{url} answered {status} without JSON"))?;
            return Ok(if status.is_success() {
                Ok(value)
            } else {
                Err((status, value))
            });
        }
        bail!("{url} stayed overloaded")
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = v["error"]["message"].as_str().unwrap_or("request failed");
            bail!("{url} answered {status}: {msg}");
        }
        Ok(resp)
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.get(path).await?.json().await?)
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.get(path).await?.text().await?)
    }

    /// Streams a GET's body into `to`.
    pub async fn download(&self, path: &str, to: &std::path::Path) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut resp = self.get(path).await?;
        let mut f = tokio::fs::File::create(to)
            .await
            .with_context(|| format!("cannot create {}", to.display()))?;
        while let Some(chunk) = resp.chunk().await? {
            f.write_all(&chunk).await?;
        }
        f.sync_all().await?;
        Ok(())
    }
}

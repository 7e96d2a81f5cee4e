//! Telling people an export finished: an email over SMTP (lettre) with the signed link,
//! and an optional per-org webhook, a JSON POST signed with HMAC-SHA256.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `AUDITRAIL_SMTP_URL` (`smtp://host[:port]`, port 25 by default) and `AUDITRAIL_SMTP_FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: String,
}

impl SmtpSettings {
    pub fn parse(url: &str, from: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("smtp://").ok_or_else(|| {
            format!(
                "smtp_url `{url}` must look like smtp://host:port (a relay that accepts plain SMTP)"
            )
        })?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("smtp_url `{url}`: `{p}` is not a port"))?,
            ),
            None => (rest, 25),
        };
        if host.is_empty() {
            return Err(format!("smtp_url `{url}` names no host"));
        }
        if from.parse::<lettre::Address>().is_err() {
            return Err(format!("smtp_from `{from}` is not an email address"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            from: from.to_owned(),
        })
    }
}

/// Sends one plain-text email.
pub async fn email(
    smtp: &SmtpSettings,
    to: &str,
    subject: &str,
    body: String,
) -> Result<(), String> {
    let msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("from: {e}"))?)
        .to(to.parse().map_err(|e| format!("to `{to}`: {e}"))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(15)))
        .build();
    transport.send(msg).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// An org's export webhook: where to POST and the secret it is signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

pub fn webhook_setting(org: &str) -> String {
    format!("org/{org}/export_webhook")
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the receiver
/// recomputes it and rejects stale timestamps, so a captured call cannot be replayed.
pub fn webhook_signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to the webhook with its signature in `Auditrail-Signature`, under the
/// outbound address policy (the URL is the org's choice); redirects are not followed.
pub async fn call_webhook(
    outbound: &crate::outbound::Outbound,
    hook: &Webhook,
    body: String,
) -> Result<(), String> {
    let t = chrono::Utc::now().timestamp();
    let sig = webhook_signature(&hook.secret, t, &body);
    let url = reqwest::Url::parse(&hook.url).map_err(|e| e.to_string())?;
    outbound.check_literal(&url).map_err(|e| e.to_string())?;
    let resp = outbound
        .http_client(Duration::from_secs(15), Duration::from_secs(5))
        .map_err(|e| e.to_string())?
        .post(url)
        .header("content-type", "application/json")
        .header("auditrail-signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| match crate::outbound::refusal_in(&e) {
            Some(r) => r.to_string(),
            None => crate::delivery::sts::short_reqwest(&e).to_owned(),
        })?;
    if !resp.status().is_success() {
        return Err(format!("webhook answered {}", resp.status()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let s = SmtpSettings::parse("smtp://mail.local:2525", "audit@example.com").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("mail.local", 2525));
        assert_eq!(
            SmtpSettings::parse("smtp://relay", "a@b.io").unwrap().port,
            25
        );
        assert!(SmtpSettings::parse("http://relay", "a@b.io").is_err());
        assert!(SmtpSettings::parse("smtp://relay:x", "a@b.io").is_err());
        assert!(SmtpSettings::parse("smtp://relay", "nobody").is_err());
    }

    #[test]
    fn webhook_signatures_bind_time_and_body() {
        let s = webhook_signature("k", 10, "{}");
        assert!(s.starts_with("t=10,v1="));
        assert_ne!(s, webhook_signature("k", 11, "{}"));
        assert_ne!(s, webhook_signature("k", 10, "{ }"));
        assert_ne!(s, webhook_signature("j", 10, "{}"));
    }
}

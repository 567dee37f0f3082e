//! A small client of the hub's HTTP API (for the demo, its scripted specialist, and tests).

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A reqwest client builder that trusts only the county CA in `ca_pem` (none: no roots at all,
/// so only plaintext `http://` works).
pub fn http_client(ca_pem: Option<&[u8]>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder().tls_built_in_root_certs(false);
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).context("county CA certificate")?);
    }
    Ok(b)
}

/// The hub API as one specialist.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// A client of `base` (`https://host:port`) with a bearer token, trusting only the county CA
    /// in `ca_pem` (`None`: a plaintext `http://` hub run with `--insecure-plaintext`).
    pub fn new(base: &str, ca_pem: Option<&[u8]>, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: http_client(ca_pem)?.build()?,
        })
    }

    /// The same hub with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: token.to_string(), ..self.clone() }
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.context(path.to_string())
    }

    /// GET a path; returns the HTTP status and JSON body.
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.get(path).await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// GET a file; returns the HTTP status and the body's bytes.
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let r = self.get(path).await?;
        let status = r.status().as_u16();
        Ok((status, r.bytes().await.context(path.to_string())?.to_vec()))
    }

    /// POST JSON; returns the HTTP status and JSON body.
    pub async fn post_raw(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .context(path.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn ok(&self, r: anyhow::Result<(u16, Value)>, what: &str) -> anyhow::Result<Value> {
        let (status, body) = r?;
        if !(200..300).contains(&status) {
            bail!("{what}: HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// `/api/stats`.
    pub async fn stats(&self) -> anyhow::Result<Value> {
        self.ok(self.get_raw("/api/stats").await, "stats").await
    }

    /// `/api/queue`.
    pub async fn queue(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.ok(self.get_raw("/api/queue").await, "queue").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `/api/studies`.
    pub async fn studies(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.ok(self.get_raw("/api/studies").await, "studies").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `/api/studies/{uid}`.
    pub async fn study(&self, uid: &str) -> anyhow::Result<Value> {
        self.ok(self.get_raw(&format!("/api/studies/{uid}")).await, "study").await
    }

    /// Claim a study.
    pub async fn claim(&self, uid: &str) -> anyhow::Result<Value> {
        self.ok(self.post_raw(&format!("/api/studies/{uid}/claim"), &json!({})).await, "claim").await
    }

    /// Report a study.
    pub async fn report(&self, uid: &str, findings: &str, conclusion: &str) -> anyhow::Result<Value> {
        let body = json!({ "findings": findings, "conclusion": conclusion });
        self.ok(self.post_raw(&format!("/api/studies/{uid}/report"), &body).await, "report").await
    }

    /// `/api/devices`.
    pub async fn devices(&self) -> anyhow::Result<Vec<Value>> {
        let v = self.ok(self.get_raw("/api/devices").await, "devices").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `/api/devices/{device}/output`: the device's latest printed lines, newest first.
    pub async fn device_output(&self, device: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.ok(self.get_raw(&format!("/api/devices/{device}/output")).await, "output").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `/api/devices/{device}/streams`.
    pub async fn streams(&self, device: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.ok(self.get_raw(&format!("/api/devices/{device}/streams")).await, "streams").await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Samples per lead of a stream range.
    pub async fn stream_samples(
        &self,
        device: &str,
        stream: u32,
        from: u64,
        count: u64,
    ) -> anyhow::Result<Vec<Vec<i32>>> {
        let v = self
            .ok(
                self.get_raw(&format!("/api/devices/{device}/streams/{stream}/samples?from={from}&count={count}"))
                    .await,
                "samples",
            )
            .await?;
        let leads = v["leads"].as_array().cloned().unwrap_or_default();
        Ok(leads
            .iter()
            .map(|l| {
                l["samples"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_i64()).map(|x| x as i32).collect())
                    .unwrap_or_default()
            })
            .collect())
    }
}

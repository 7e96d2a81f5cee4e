//! The object-store emulators the tests and the streams bench deliver to, which nobody
//! here wrote: Google Cloud Storage's API as `gcp-storage-emulator` (PyPI) serves it,
//! Azure Blob Storage's as Azurite (npm) serves it, its container created with
//! Microsoft's own Python SDK. Each keeps its data in a directory of its own, so it can
//! be stopped mid-stream and started again.
#![allow(
    dead_code,
    reason = "shared by tests and the streams bench, which use parts"
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

/// The binary under test, for `verify`.
const BIN: &str = env!("CARGO_BIN_EXE_auditrail");

pub const BUCKET: &str = "audit";
/// Azurite's well-known development account and key.
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An emulator's service key for GCS: no OAuth (the emulator has no token service).
pub fn gcs_key() -> Value {
    json!({"type": "service_account", "client_email": "auditrail@test.iam.gserviceaccount.com",
           "private_key": "unused", "private_key_id": "unused", "disable_oauth": true})
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Store {
    Gcs,
    Azure,
}

/// What a test needs, or why it skips (failing under `AUDITRAIL_REQUIRE_EMULATORS`).
pub fn available(store: Store) -> bool {
    let ok = match store {
        Store::Gcs => Command::new("python3")
            .args(["-c", "import gcp_storage_emulator"])
            .output()
            .is_ok_and(|o| o.status.success()),
        Store::Azure => {
            azurite().is_some()
                && Command::new("python3")
                    .args(["-c", "import azure.storage.blob"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        }
    };
    if !ok {
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_EMULATORS").is_none(),
            "{store:?} emulator missing: pip install gcp-storage-emulator azure-storage-blob; npm install azurite (AUDITRAIL_AZURITE=…/azurite-blob)"
        );
        eprintln!("skipped: no {store:?} emulator");
    }
    ok
}

pub fn azurite() -> Option<String> {
    if let Some(p) = std::env::var_os("AUDITRAIL_AZURITE") {
        return Some(p.to_string_lossy().into_owned());
    }
    Command::new("azurite-blob")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "azurite-blob".to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An emulator process keeping its data in `dir`, so it can be killed and restarted.
pub struct Emulator {
    pub store: Store,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Emulator {
    pub fn start(store: Store) -> Self {
        let mut e = Emulator {
            store,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        e.restart();
        if store == Store::Azure {
            let conn = format!(
                "DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint={}",
                e.endpoint()
            );
            let py = format!(
                "from azure.storage.blob import BlobServiceClient as C; C.from_connection_string({conn:?}).create_container({BUCKET:?})"
            );
            let o = Command::new("python3").args(["-c", &py]).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        e
    }

    pub fn endpoint(&self) -> String {
        match self.store {
            Store::Gcs => format!("http://127.0.0.1:{}", self.port),
            Store::Azure => format!("http://127.0.0.1:{}/{AZ_ACCOUNT}", self.port),
        }
    }

    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_str().unwrap().to_owned();
        let mut cmd = match self.store {
            Store::Gcs => {
                let mut c = Command::new("python3");
                c.args(["-m", "gcp_storage_emulator", "-d", &dir, "start", "--host"])
                    .args([
                        "127.0.0.1",
                        "--port",
                        &port,
                        "--default-bucket",
                        BUCKET,
                        "-q",
                    ]);
                c
            }
            Store::Azure => {
                let mut c = Command::new(azurite().unwrap());
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port, "--location"])
                    .args([&dir, "--silent", "--skipApiVersionCheck"]);
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "{:?} emulator did not start",
                self.store
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the store mid-stream: SIGTERM (Azurite keeps its metadata in memory between
    /// saves, so a SIGKILL would lose the container itself), SIGKILL if it lingers.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every key under `prefix`, read with a client that is not auditrail's: GCS's JSON
    /// API straight over HTTP; for Azure, `object_store`'s Azure client.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        match self.store {
            Store::Gcs => {
                let url = format!(
                    "{}/storage/v1/b/{BUCKET}/o?prefix={}",
                    self.endpoint(),
                    prefix.replace('/', "%2F").replace('=', "%3D")
                );
                let page: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                assert!(
                    page.get("nextPageToken").is_none(),
                    "one page is enough here"
                );
                page["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|i| i["name"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Store::Azure => {
                let metas: Vec<_> = self
                    .azure()
                    .list(Some(&object_store::path::Path::from(prefix)))
                    .try_collect()
                    .await
                    .unwrap();
                metas.iter().map(|m| m.location.to_string()).collect()
            }
        }
    }

    pub async fn read(&self, key: &str) -> Vec<u8> {
        match self.store {
            Store::Gcs => {
                let url = format!(
                    "{}/storage/v1/b/{BUCKET}/o/{}?alt=media",
                    self.endpoint(),
                    key.replace('/', "%2F").replace('=', "%3D")
                );
                let r = reqwest::get(url).await.unwrap();
                assert_eq!(r.status().as_u16(), 200, "{key}");
                r.bytes().await.unwrap().to_vec()
            }
            Store::Azure => {
                let path = object_store::path::Path::from(key);
                let got = self.azure().get(&path).await.unwrap();
                got.bytes().await.unwrap().to_vec()
            }
        }
    }

    pub async fn write(&self, key: &str, body: Vec<u8>) {
        match self.store {
            Store::Gcs => {
                let url = format!(
                    "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}",
                    self.endpoint(),
                    key.replace('/', "%2F").replace('=', "%3D")
                );
                let r = reqwest::Client::new()
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
            Store::Azure => {
                let path = object_store::path::Path::from(key);
                self.azure().put(&path, body.into()).await.unwrap();
            }
        }
    }

    pub fn azure(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::azure::MicrosoftAzureBuilder::new()
                .with_account(AZ_ACCOUNT)
                .with_access_key(AZ_KEY)
                .with_container_name(BUCKET)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }

    pub fn destination(&self, extra: Value) -> Value {
        let mut d = match self.store {
            Store::Gcs => json!({"kind": "gcs", "bucket": BUCKET, "prefix": "logs",
                "endpoint": self.endpoint(), "credentials": {"service_account_key": gcs_key()}}),
            Store::Azure => {
                json!({"kind": "azure_blob", "account": AZ_ACCOUNT, "container": BUCKET,
                "prefix": "logs", "endpoint": self.endpoint(), "credentials": {"access_key": AZ_KEY}})
            }
        };
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    }

    pub fn verify(&self, key: &str) -> (bool, String) {
        let scheme = match self.store {
            Store::Gcs => "gs",
            Store::Azure => "az",
        };
        let mut cmd = Command::new(BIN);
        cmd.args([
            "verify",
            &format!("{scheme}://{BUCKET}/logs"),
            "--public-key",
            key,
        ])
        .args(["--quiet", "--endpoint", &self.endpoint()]);
        match self.store {
            Store::Gcs => cmd.env("GOOGLE_SERVICE_ACCOUNT_KEY", gcs_key().to_string()),
            Store::Azure => cmd
                .env("AZURE_STORAGE_ACCOUNT_NAME", AZ_ACCOUNT)
                .env("AZURE_STORAGE_ACCOUNT_KEY", AZ_KEY),
        };
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

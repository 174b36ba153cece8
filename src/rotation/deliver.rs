//! Handing a new client secret to the backup server (issue 5's deliverers): a file written
//! atomically, a command that reads the secret on its standard input, or a signed webhook.
//! The secret never appears in a file name, an argument, an environment variable, a log
//! line or an error.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// The credential to hand over.
pub struct Delivery<'a> {
    pub organization: &'a str,
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub key_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    /// A client secret, or for a certificate its private key (PEM).
    pub secret: &'a SecretString,
    /// For a certificate: the certificate (PEM) and its SHA-1 thumbprint.
    pub certificate: Option<(&'a str, &'a str)>,
}

impl Delivery<'_> {
    /// The JSON document the file and webhook deliverers send (and a command deliverer
    /// reads on standard input for a certificate).
    fn document(&self) -> Document<'_> {
        let (client_secret, certificate, private_key, thumbprint) = match self.certificate {
            None => (Some(self.secret.expose_secret()), None, None, None),
            Some((pem, thumbprint)) => (
                None,
                Some(pem),
                Some(self.secret.expose_secret()),
                Some(thumbprint),
            ),
        };
        Document {
            version: DOCUMENT_VERSION,
            organization: self.organization,
            tenant_id: self.tenant_id,
            client_id: self.client_id,
            credential_type: if self.certificate.is_some() {
                "certificate"
            } else {
                "secret"
            },
            secret_id: self.key_id,
            expires_at: self.expires_at,
            client_secret,
            certificate,
            private_key,
            thumbprint,
        }
    }
}

/// The delivery document's format: 2 added `version`, `credential_type` and the
/// certificate fields to version 1 (a secret's document is otherwise unchanged).
pub const DOCUMENT_VERSION: u32 = 2;

/// What the file and webhook deliverers send. Serialized straight into a buffer that is
/// wiped when dropped (no intermediate `serde_json::Value` holding a copy of the secret).
#[derive(serde::Serialize)]
struct Document<'a> {
    version: u32,
    organization: &'a str,
    tenant_id: Uuid,
    client_id: Uuid,
    /// `secret` or `certificate`.
    credential_type: &'static str,
    /// Microsoft's keyId of the secret or certificate.
    secret_id: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
    /// The certificate, PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<&'a str>,
    /// Its private key, PEM (PKCS#8).
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key: Option<&'a str>,
    /// Its SHA-1 thumbprint, upper-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbprint: Option<&'a str>,
}

/// The deliverers are configuration data (`[[rotation.*]]`); this module delivers.
pub use crate::config::Deliverer;

impl Deliverer {
    pub fn describe(&self) -> String {
        match self {
            Deliverer::File { directory, .. } => format!("file in {}", directory.display()),
            Deliverer::Command { program, .. } => format!("command {}", program.display()),
            // Never the query: it may carry a token.
            Deliverer::Webhook { url, .. } => {
                format!(
                    "webhook {}{}",
                    url.origin().ascii_serialization(),
                    url.path()
                )
            }
        }
    }
}

pub async fn deliver(
    http: &reqwest::Client,
    deliverer: &Deliverer,
    delivery: &Delivery<'_>,
) -> Result<(), String> {
    match deliverer {
        Deliverer::File {
            directory,
            mode,
            group,
            pkcs12,
        } => {
            let directory = directory.clone();
            let (mode, group) = (*mode, *group);
            let name = format!("{}.json", delivery.organization);
            let body =
                crate::secret_buf::json_pretty(&delivery.document()).map_err(|e| e.to_string())?;
            let pfx = match (pkcs12, delivery.certificate) {
                (Some(passphrase), Some((pem, _))) => Some((
                    format!("{}.pfx", delivery.organization),
                    pkcs12_file(delivery, pem, passphrase)?,
                )),
                _ => None,
            };
            tokio::task::spawn_blocking(move || {
                // The PKCS#12 file first: a reader that sees the new document finds the
                // new certificate beside it.
                if let Some((pfx_name, pfx)) = &pfx {
                    write_atomically(&directory, pfx_name, pfx, mode, group)?;
                }
                write_atomically(&directory, &name, body.as_bytes(), mode, group)
            })
            .await
            .map_err(|error| format!("file delivery task failed: {error}"))?
        }
        Deliverer::Command {
            program,
            args,
            timeout,
        } => run_command(program, args, *timeout, delivery).await,
        Deliverer::Webhook { url, key, access } => {
            let key = crate::sink_http::signing_key(key)?;
            let request = access
                .post(http, url.clone())
                .map_err(|error| format!("{}: {error}", deliverer.describe()))?;
            let body = crate::secret_buf::json(&delivery.document()).map_err(|e| e.to_string())?;
            let response = crate::sink_http::signed(
                request,
                &key,
                crate::sink_http::Purpose::Credential,
                body.as_bytes(),
            )
            .body(body.into_body())
            .send()
            .await
            .map_err(|error| {
                format!(
                    "{}: {}",
                    deliverer.describe(),
                    crate::microsoft::errors::transport_description(&error)
                )
            })?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{} answered {}",
                    deliverer.describe(),
                    response.status()
                ))
            }
        }
    }
}

/// The delivered certificate and key as PKCS#12 under the configured passphrase.
fn pkcs12_file(
    delivery: &Delivery<'_>,
    certificate_pem: &str,
    passphrase: &crate::config::SecretSource,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let passphrase = passphrase.read().map_err(|error| error.to_string())?;
    let certificate = crate::microsoft::ClientCertificate::stored(
        certificate_pem.as_bytes(),
        delivery.secret.expose_secret().as_bytes(),
    )
    .map_err(|error| format!("the certificate cannot be written as PKCS#12: {error}"))?;
    crate::microsoft::pkcs12::write(
        &certificate,
        delivery.secret,
        &passphrase,
        delivery.organization,
    )
    .map_err(|error| error.to_string())
}

/// Takes back what `deliverer` handed over for `organization`, when it is removed: the
/// file deliverer's file is deleted (`Ok(Some(what was done))`, `Ok(None)` when there was
/// none); a command's or a webhook's copy is out of reach (`Err(what the operator must
/// do)`).
pub fn withdraw(deliverer: &Deliverer, organization: &str) -> Result<Option<String>, String> {
    match deliverer {
        Deliverer::File { directory, .. } => {
            let mut removed = Vec::new();
            for name in [
                format!("{organization}.json"),
                format!("{organization}.pfx"),
            ] {
                remove_leftover_temporaries(directory, &name);
                let path = directory.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => removed.push(path.display().to_string()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(format!(
                            "the delivered credentials file {} could not be removed ({error}): it holds a working credential, remove it by hand",
                            path.display()
                        ));
                    }
                }
            }
            Ok((!removed.is_empty()).then(|| {
                format!(
                    "removed the delivered credentials file {}",
                    removed.join(" and ")
                )
            }))
        }
        Deliverer::Command { .. } | Deliverer::Webhook { .. } => Err(format!(
            "the backup server was handed {organization}'s secret by the {}: it keeps its copy, remove the organization there too",
            deliverer.describe()
        )),
    }
}

/// Whether `file_name` is a temporary file `write_atomically` made for `name`:
/// `.{name}.{32 hex digits}.tmp`, exactly (names may hold dots: organization `a`'s pattern
/// must not take `a.json`'s temporary file, `.a.json.json.{hex}.tmp`).
fn is_temporary_of(file_name: &str, name: &str) -> bool {
    file_name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .is_some_and(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Deletes the temporary files an earlier, killed delivery of `name` left in `directory`
/// (only one delivery per organization runs at a time, so any that exists is a leftover).
/// Best effort: a file that cannot be deleted is logged.
fn remove_leftover_temporaries(directory: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if is_temporary_of(file_name, name)
            && let Err(error) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(
                "cannot remove the leftover temporary file {}: {error}",
                entry.path().display()
            );
        }
    }
}

/// Writes `body` to `directory/name` so that a reader sees the old file or the new one,
/// never a part: a temporary file with the final mode from its creation, synced, then
/// renamed over, and the directory synced.
fn write_atomically(
    directory: &Path,
    name: &str,
    body: &[u8],
    mode: u32,
    group: Option<u32>,
) -> Result<(), String> {
    if mode & 0o037 != 0 {
        return Err(format!(
            "refusing mode {mode:04o} for a secret file: use 0600 or 0640"
        ));
    }
    remove_leftover_temporaries(directory, name);
    let target = directory.join(name);
    let temporary = directory.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple())); // see is_temporary_of
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
        // The umask may have narrowed the mode; set exactly what was asked.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        if let Some(gid) = group {
            std::os::unix::fs::fchown(&file, None, Some(gid)).map_err(|error| {
                format!(
                    "cannot give {} to group {gid}: {error} (under the shipped unit's PrivateUsers=yes no other group is mapped: leave `group` unset and make the directory setgid to that group, see systemd/kodo-access.service)",
                    temporary.display()
                )
            })?;
        }
        file.write_all(body)
            .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&temporary, &target)
            .map_err(|error| format!("cannot rename onto {}: {error}", target.display()))?;
        std::fs::File::open(directory)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// What a command deliverer inherits of the daemon's environment; everything else it is
/// given is one of the documented `KODO_ACCESS_*` ids.
const INHERITED_ENVIRONMENT: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

async fn run_command(
    program: &Path,
    args: &[String],
    timeout: Duration,
    delivery: &Delivery<'_>,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(program);
    // Nothing of the daemon's environment but an allow-list: not CREDENTIALS_DIRECTORY
    // (where systemd put the master key), not a database URL, not the config overrides.
    command.env_clear();
    for name in INHERITED_ENVIRONMENT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    command
        .args(args)
        // Its own process group, so that a timeout ends the program and all it started.
        .process_group(0)
        .env("KODO_ACCESS_ORGANIZATION", delivery.organization)
        .env("KODO_ACCESS_TENANT_ID", delivery.tenant_id.to_string())
        .env("KODO_ACCESS_CLIENT_ID", delivery.client_id.to_string())
        .env(
            "KODO_ACCESS_SECRET_ID",
            delivery.key_id.map(|k| k.to_string()).unwrap_or_default(),
        )
        .env(
            "KODO_ACCESS_SECRET_EXPIRES_AT",
            delivery
                .expires_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        )
        .env(
            "KODO_ACCESS_CREDENTIAL_TYPE",
            if delivery.certificate.is_some() {
                "certificate"
            } else {
                "secret"
            },
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", program.display()))?;
    let group = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
    let mut stdin = child.stdin.take().expect("piped");
    // A secret as one line; a certificate as the JSON document (certificate and key).
    let secret = if delivery.certificate.is_some() {
        let mut document =
            crate::secret_buf::json(&delivery.document()).map_err(|e| e.to_string())?;
        document.extend(b"\n");
        document
    } else {
        let mut secret =
            crate::secret_buf::SecretBuf::with_capacity(delivery.secret.expose_secret().len() + 1);
        secret.extend(delivery.secret.expose_secret().as_bytes());
        secret.extend(b"\n");
        secret
    };
    // A program that exits without reading is its own failure, reported by its status.
    let _ = stdin.write_all(secret.as_bytes()).await;
    drop(stdin);
    // What it says on stderr, at most 64 KiB kept (the rest read and dropped).
    let mut stderr = child.stderr.take().expect("piped");
    let said = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut kept = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        kept
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "{} did not finish within {}s (its process group was killed)",
                program.display(),
                timeout.as_secs()
            ));
        }
    };
    match status {
        Err(error) => Err(format!("{}: {error}", program.display())),
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            let stderr = tokio::time::timeout(Duration::from_secs(1), said)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            // Its own words, minus anything that looks like the secret.
            let said = String::from_utf8_lossy(&stderr)
                .replace(delivery.secret.expose_secret(), "[REDACTED]");
            let said: String = said.chars().take(300).collect();
            Err(format!(
                "{} exited with {}: {}",
                program.display(),
                status,
                said.trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_temporaries_are_told_apart_by_organization() {
        let directory = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4().simple().to_string();
        let names = [
            format!(".a.json.{id}.tmp"),      // organization a's leftover
            format!(".a.json.json.{id}.tmp"), // organization a.json's, maybe in flight
            ".a.json.notes.tmp".to_string(),  // someone else's
            "a.json".to_string(),             // the delivered file
        ];
        for name in &names {
            std::fs::write(directory.path().join(name), "x").unwrap();
        }
        remove_leftover_temporaries(directory.path(), "a.json");
        let mut left: Vec<String> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = names[1..].to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    fn delivery(secret: &SecretString) -> Delivery<'_> {
        Delivery {
            organization: "contoso",
            tenant_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            key_id: Some(Uuid::new_v4()),
            expires_at: Some(Utc::now()),
            secret,
            certificate: None,
        }
    }

    #[tokio::test]
    async fn file_delivery_replaces_the_file_atomically_with_the_mode_asked() {
        let directory = tempfile::tempdir().unwrap();
        let secret = SecretString::from("New8Q~rotated-secret");
        let deliverer = Deliverer::File {
            directory: directory.path().into(),
            mode: 0o640,
            group: None,
            pkcs12: None,
        };
        std::fs::write(directory.path().join("contoso.json"), "old").unwrap();
        deliver(&reqwest::Client::new(), &deliverer, &delivery(&secret))
            .await
            .unwrap();
        let path = directory.path().join("contoso.json");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["client_secret"], "New8Q~rotated-secret");
        assert_eq!(written["organization"], "contoso");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
        let world_readable = Deliverer::File {
            directory: directory.path().into(),
            mode: 0o644,
            group: None,
            pkcs12: None,
        };
        let error = deliver(&reqwest::Client::new(), &world_readable, &delivery(&secret))
            .await
            .unwrap_err();
        assert!(error.contains("refusing mode 0644"), "{error}");
    }

    #[tokio::test]
    async fn command_delivery_passes_the_secret_on_stdin_only() {
        let directory = tempfile::tempdir().unwrap();
        let out = directory.path().join("received");
        let script = directory.path().join("deploy.sh");
        std::fs::write(&script, format!("#!/bin/sh\nread secret\nprintf '%s|%s|%s' \"$secret\" \"$KODO_ACCESS_ORGANIZATION\" \"$*\" > {}\nenv | grep -c Rot8Q > {}.env || true\n", out.display(), out.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let secret = SecretString::from("Rot8Q~on-stdin-only");
        let deliverer = Deliverer::Command {
            program: script.clone(),
            args: vec!["--reload".into()],
            timeout: Duration::from_secs(10),
        };
        deliver(&reqwest::Client::new(), &deliverer, &delivery(&secret))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "Rot8Q~on-stdin-only|contoso|--reload"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{}.env", out.display()))
                .unwrap()
                .trim(),
            "0",
            "not in the environment"
        );

        std::fs::write(
            &script,
            "#!/bin/sh\nread secret\necho \"failed with $secret\" >&2\nexit 3\n",
        )
        .unwrap();
        let error = deliver(&reqwest::Client::new(), &deliverer, &delivery(&secret))
            .await
            .unwrap_err();
        assert!(
            error.contains("exit status: 3")
                && error.contains("[REDACTED]")
                && !error.contains("Rot8Q"),
            "{error}"
        );

        std::fs::write(&script, "#!/bin/sh\nsleep 5\n").unwrap();
        let slow = Deliverer::Command {
            program: script,
            args: vec![],
            timeout: Duration::from_millis(300),
        };
        let error = deliver(&reqwest::Client::new(), &slow, &delivery(&secret))
            .await
            .unwrap_err();
        assert!(error.contains("did not finish"), "{error}");
    }

    #[tokio::test]
    async fn a_command_sees_only_the_allowed_environment() {
        let directory = tempfile::tempdir().unwrap();
        let script = directory.path().join("env.sh");
        let out = directory.path().join("env.txt");
        std::fs::write(&script, format!("#!/bin/sh\nenv > {}\n", out.display())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let deliverer = Deliverer::Command {
            program: script,
            args: vec![],
            timeout: Duration::from_secs(10),
        };
        let secret = SecretString::from("Env8Q~rotated-secret");
        // cargo gives every test process CARGO_* variables (and scripts/test a DATABASE_URL):
        // the daemon's own environment, which the program must not see.
        assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO_")));
        deliver(&reqwest::Client::new(), &deliverer, &delivery(&secret))
            .await
            .unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        let names: Vec<&str> = seen
            .lines()
            .filter_map(|line| line.split('=').next())
            .filter(|name| !name.is_empty())
            .collect();
        for name in &names {
            assert!(
                name.starts_with("KODO_ACCESS_")
                    || ["PATH", "LANG", "LC_ALL", "TZ", "PWD", "SHLVL", "_"].contains(name),
                "{name} leaked into the deliverer's environment"
            );
        }
        assert!(names.contains(&"KODO_ACCESS_ORGANIZATION") && names.contains(&"PATH"));
    }

    #[tokio::test]
    async fn a_timeout_kills_everything_the_command_started() {
        let directory = tempfile::tempdir().unwrap();
        let script = directory.path().join("forks.sh");
        let pid_file = directory.path().join("child.pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep 60 &\necho $! > {}\nsleep 60\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let deliverer = Deliverer::Command {
            program: script,
            args: vec![],
            timeout: Duration::from_millis(500),
        };
        let secret = SecretString::from("Grp8Q~rotated-secret");
        let error = deliver(&reqwest::Client::new(), &deliverer, &delivery(&secret))
            .await
            .unwrap_err();
        assert!(error.contains("did not finish"), "{error}");
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting for whoever reaps orphans here: not running.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat")).ok();
            let running = state.as_deref().is_some_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .map(str::trim_start)
                    .is_some_and(|rest| !rest.starts_with('Z'))
            });
            if !running {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the command's child {child} outlived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

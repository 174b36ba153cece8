//! How kodo-access reaches an HTTP sink (an Alertmanager, an alert webhook, a rotation
//! webhook): one client policy for all (timeouts, no redirects), and each sink's own
//! authentication (basic auth or a bearer token) and TLS (a CA to trust instead of the
//! built-in roots, a client certificate for mutual TLS).
//!
//! Every secret (password, token, client key) is read when a request is built, so a file
//! or credential replaced on disk is used from the next delivery on, without a restart;
//! a sink with its own TLS settings gets a client built for that delivery, for the same
//! reason (a renewed client certificate is picked up).

use std::time::Duration;

use secrecy::ExposeSecret;

/// The client every sink request goes through, apart from its TLS settings.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("kodo-access/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        // A sink or webhook that redirects would carry an alert or a new secret to an
        // origin nobody configured: never followed, the redirect is the error.
        .redirect(reqwest::redirect::Policy::none())
}

/// A sink's authentication and TLS settings are configuration data; this module uses them.
pub use crate::config::{ClientCertificate, SinkAccess, SinkAuth, SinkTls};

impl SinkAccess {
    /// A POST to `url` as this sink: through `shared` unless the sink has its own TLS
    /// settings, with its authentication header (marked sensitive).
    pub fn post(
        &self,
        shared: &reqwest::Client,
        url: url::Url,
    ) -> Result<reqwest::RequestBuilder, String> {
        let request = match &self.tls {
            None => shared.post(url),
            Some(tls) => tls.client()?.post(url),
        };
        Ok(match &self.auth {
            None => request,
            Some(SinkAuth::Basic { username, password }) => {
                let password = password.read().map_err(|error| error.to_string())?;
                request.basic_auth(username, Some(password.expose_secret()))
            }
            Some(SinkAuth::Bearer { token }) => {
                let token = token.read().map_err(|error| error.to_string())?;
                request.bearer_auth(token.expose_secret())
            }
        })
    }

    /// Reads every secret and file this sink needs, as a delivery would (`config check`).
    pub fn check(&self) -> Result<(), String> {
        match &self.auth {
            None => {}
            Some(SinkAuth::Basic { password, .. }) => {
                password.read().map_err(|error| error.to_string())?;
            }
            Some(SinkAuth::Bearer { token }) => {
                token.read().map_err(|error| error.to_string())?;
            }
        }
        if let Some(tls) = &self.tls {
            tls.client()?;
        }
        Ok(())
    }
}

impl SinkTls {
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = client_builder();
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read CA file {}: {error}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .ok_or_else(|| format!("CA file {} holds no PEM certificate", path.display()))?;
            builder = builder.tls_certs_only(certificates);
        }
        if let Some(client) = &self.client_certificate {
            let certificate = std::fs::read(&client.certificate_file).map_err(|error| {
                format!(
                    "cannot read client certificate {}: {error}",
                    client.certificate_file.display()
                )
            })?;
            let key = client.key.read().map_err(|error| error.to_string())?;
            let mut pem = crate::secret_buf::SecretBuf::with_capacity(
                certificate.len() + key.expose_secret().len() + 2,
            );
            pem.extend(&certificate);
            pem.extend(b"\n");
            pem.extend(key.expose_secret().as_bytes());
            // The error names the files, never what they hold.
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
                format!(
                    "client certificate {} and key ({}) are not a PEM certificate and private key",
                    client.certificate_file.display(),
                    client.key
                )
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|error| format!("cannot set up TLS for the sink: {error}"))
    }
}

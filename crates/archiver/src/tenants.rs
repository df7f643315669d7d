//! `ARCHIVER_TENANTS_FILE` (docs/contract.md section 7): each tenant's own vendor API key
//! and webhook secret, read once at start.
//!
//! ```toml
//! [tenants.acme]
//! provider_api_key_file = "/run/secrets/acme/provider-api-key"
//! webhook_secret = "current secret"
//! previous_webhook_secret = "the one being rotated out"   # optional
//!
//! [tenants.default]
//! webhook_secret_file = "/run/secrets/default/webhook-secret"
//! ```
//!
//! Every secret may be given inline or as `..._file` (a path, as Kubernetes mounts
//! Secrets), never both. Rotation is a second, named setting rather than a list, so that a
//! file always says which secret is the current one.
//!
//! Invariants: a secret is never printed (its `Debug` is `<redacted>`, and no problem
//! report quotes a value from the file) and is wiped from memory when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};
use zeroize::Zeroizing;

use crate::config::Problems;

/// The setting that names the file, as problems cite it.
const VARIABLE: &str = "ARCHIVER_TENANTS_FILE";

/// The keys a tenant's table may hold. Each secret also has a `_file` form.
const SECRETS: [&str; 3] = ["provider_api_key", "webhook_secret", "previous_webhook_secret"];

/// A credential: wiped when dropped, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret itself, for the one place that uses it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One tenant's credentials.
#[derive(Debug, Clone, Default)]
pub struct Tenant {
    /// The vendor API key for this tenant's sessions (refresh and refetch).
    pub provider_api_key: Option<Secret>,
    /// The secrets a webhook for this tenant may be signed with: the current one first,
    /// then the previous one during a rotation. Empty: the tenant takes no webhooks.
    pub webhook_secrets: Vec<Secret>,
}

/// Every tenant of the file, by name.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    tenants: BTreeMap<String, Tenant>,
}

impl Tenants {
    /// The tenant named `name`, if the file has it.
    pub fn get(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Every tenant, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tenant)> {
        self.tenants.iter().map(|(name, tenant)| (name.as_str(), tenant))
    }

    /// Reads and checks the file at `path`; every problem goes to `problems`, and what could
    /// be read is returned (the caller stops at `problems.finish()`).
    pub fn read(path: &Path, problems: &mut Problems) -> Tenants {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(err) => {
                problems.push(format!("{VARIABLE}: cannot read {}: {}", path.display(), err.kind()));
                return Tenants::default();
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Tenants::parse(&text, base, &format!("{VARIABLE} {}", path.display()), problems)
    }

    /// Checks the file's text. `base` is where relative `_file` paths start; `origin` names
    /// the file in problems.
    fn parse(text: &str, base: &Path, origin: &str, problems: &mut Problems) -> Tenants {
        let table = match text.parse::<Table>() {
            Ok(table) => table,
            Err(err) => {
                // toml's own message can quote the offending line, which may hold a secret:
                // only the position is reported.
                let at = err.span().map_or(String::new(), |span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                });
                problems.push(format!("{origin}: not valid TOML{at}"));
                return Tenants::default();
            }
        };
        for key in table.keys().filter(|key| *key != "tenants") {
            problems.push(format!(
                "{origin}: unknown top-level key {key:?} (tenants are tables [tenants.NAME])"
            ));
        }
        let mut tenants = BTreeMap::new();
        match table.get("tenants") {
            None => problems.push(format!("{origin}: no [tenants.NAME] table")),
            Some(Value::Table(entries)) => {
                for (name, entry) in entries {
                    if !archive::is_valid_tenant(name) {
                        problems.push(format!(
                            "{origin}: tenant name {name:?} must match [a-z0-9][a-z0-9-]{{0,62}}"
                        ));
                        continue;
                    }
                    let Value::Table(entry) = entry else {
                        problems.push(format!("{origin}: tenants.{name} must be a table"));
                        continue;
                    };
                    let tenant = tenant(name, entry, base, origin, problems);
                    tenants.insert(name.clone(), tenant);
                }
            }
            Some(_) => problems.push(format!("{origin}: `tenants` must be a table of [tenants.NAME] tables")),
        }
        Tenants { tenants }
    }
}

/// One `[tenants.NAME]` table.
fn tenant(name: &str, entry: &Table, base: &Path, origin: &str, problems: &mut Problems) -> Tenant {
    let known = |key: &str| {
        SECRETS
            .iter()
            .any(|secret| key == *secret || key.strip_suffix("_file") == Some(secret))
    };
    for key in entry.keys().filter(|key| !known(key)) {
        problems.push(format!(
            "{origin}: tenants.{name}: unknown key {key:?} (expected provider_api_key, webhook_secret, previous_webhook_secret, each also as ..._file)"
        ));
    }
    let mut read = |key: &str| secret(name, key, entry, base, origin, problems);
    let provider_api_key = read("provider_api_key");
    let current = read("webhook_secret");
    let previous = read("previous_webhook_secret");
    if previous.is_some() && current.is_none() {
        problems.push(format!(
            "{origin}: tenants.{name}: previous_webhook_secret needs a webhook_secret (the current one)"
        ));
    }
    if provider_api_key.is_none() && current.is_none() && previous.is_none() {
        problems.push(format!(
            "{origin}: tenants.{name} has neither provider_api_key nor webhook_secret"
        ));
    }
    Tenant {
        provider_api_key,
        webhook_secrets: current.into_iter().chain(previous).collect(),
    }
}

/// A secret given as `key = "..."` or `key_file = "path"`; problems never quote the value.
fn secret(name: &str, key: &str, entry: &Table, base: &Path, origin: &str, problems: &mut Problems) -> Option<Secret> {
    let file_key = format!("{key}_file");
    let value = match (entry.get(key), entry.get(&file_key)) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            problems.push(format!("{origin}: tenants.{name}: give {key} or {file_key}, not both"));
            return None;
        }
        (Some(Value::String(value)), None) => Zeroizing::new(value.trim().to_string()),
        (Some(_), None) => {
            problems.push(format!("{origin}: tenants.{name}.{key} must be a string"));
            return None;
        }
        (None, Some(Value::String(path))) => {
            let path = base.join(PathBuf::from(path));
            match std::fs::read_to_string(&path) {
                Ok(text) => Zeroizing::new(Zeroizing::new(text).trim().to_string()),
                Err(err) => {
                    problems.push(format!(
                        "{origin}: tenants.{name}.{file_key}: cannot read {}: {}",
                        path.display(),
                        err.kind()
                    ));
                    return None;
                }
            }
        }
        (None, Some(_)) => {
            problems.push(format!("{origin}: tenants.{name}.{file_key} must be a path (a string)"));
            return None;
        }
    };
    if value.is_empty() {
        problems.push(format!("{origin}: tenants.{name}.{key} is empty"));
        return None;
    }
    if value.chars().any(char::is_control) {
        // Such a key could not travel in an HTTP header anyway.
        problems.push(format!("{origin}: tenants.{name}.{key} holds control characters"));
        return None;
    }
    Some(Secret(value))
}

/// The vendor API clients, one per key, and which tenant's sessions each may ask about
/// (docs/contract.md section 7): a tenant's own `provider_api_key` only; once a tenants file
/// is set, the global `ARCHIVER_PROVIDER_API_KEY` serves the tenant `default` alone.
#[derive(Debug, Clone, Default)]
pub struct VendorClients {
    /// Tenants with a key of their own (and `default` with the global key, once a file is set).
    by_tenant: BTreeMap<String, archive::VendorClient>,
    /// Without a tenants file: the global key, for every tenant (contract 1.0's behaviour).
    every_tenant: Option<archive::VendorClient>,
}

/// Why a tenant's sessions cannot be asked about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoVendorKey {
    /// No vendor API is configured at all.
    #[error("no vendor api is configured (ARCHIVER_PROVIDER_API_URL)")]
    NotConfigured,
    /// The tenant has no key of its own, and another tenant's key must never be used.
    #[error("tenant {0} has no provider_api_key in ARCHIVER_TENANTS_FILE (another tenant's key is never used)")]
    Tenant(String),
}

impl VendorClients {
    /// `global` is the client with `ARCHIVER_PROVIDER_API_KEY`; `own` the tenants' own.
    pub fn new(
        tenants_file_set: bool,
        global: Option<archive::VendorClient>,
        own: BTreeMap<String, archive::VendorClient>,
    ) -> VendorClients {
        let mut by_tenant = own;
        let every_tenant = if tenants_file_set {
            if let Some(global) = global {
                by_tenant.entry("default".to_string()).or_insert(global);
            }
            None
        } else {
            global
        };
        VendorClients {
            by_tenant,
            every_tenant,
        }
    }

    /// The client that may ask about `tenant`'s sessions.
    pub fn for_tenant(&self, tenant: &str) -> Result<&archive::VendorClient, NoVendorKey> {
        if let Some(client) = self.by_tenant.get(tenant).or(self.every_tenant.as_ref()) {
            return Ok(client);
        }
        if self.by_tenant.is_empty() {
            Err(NoVendorKey::NotConfigured)
        } else {
            Err(NoVendorKey::Tenant(tenant.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Tenants, Vec<String>) {
        let mut problems = Problems::default();
        let tenants = Tenants::parse(text, Path::new("/nonexistent"), "TENANTS", &mut problems);
        let shown = match problems.finish() {
            Ok(()) => Vec::new(),
            Err(err) => err.to_string().split("; ").map(str::to_string).collect(),
        };
        (tenants, shown)
    }

    #[test]
    fn a_good_file_gives_each_tenant_its_own_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme-key"), "acme-api-key\n").unwrap();
        let text = r#"
            [tenants.acme]
            provider_api_key_file = "acme-key"
            webhook_secret = "new-secret"
            previous_webhook_secret = "old-secret"

            [tenants.default]
            webhook_secret = "d"
        "#;
        let mut problems = Problems::default();
        let tenants = Tenants::parse(text, dir.path(), "TENANTS", &mut problems);
        problems.finish().unwrap();
        let acme = tenants.get("acme").unwrap();
        assert_eq!(acme.provider_api_key.as_ref().unwrap().expose(), "acme-api-key");
        let secrets: Vec<&str> = acme.webhook_secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["new-secret", "old-secret"]);
        let default = tenants.get("default").unwrap();
        assert!(default.provider_api_key.is_none());
        assert_eq!(default.webhook_secrets.len(), 1);
        assert!(tenants.get("eve").is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once_and_no_secret_is_quoted() {
        let text = r#"
            colour = "blue"
            [tenants.Acme]
            webhook_secret = "SECRET-A"
            [tenants.beta]
            webhook_secret = "SECRET-B"
            webhook_secret_file = "/x"
            [tenants.gamma]
            previous_webhook_secret = "SECRET-C"
            provider_api_kee = "SECRET-D"
            [tenants.delta]
            provider_api_key = 12345
            [tenants.epsilon]
            webhook_secret_file = "missing-file"
            [tenants.zeta]
            provider_api_key = "  "
        "#;
        let (_, problems) = parse(text);
        let expected = [
            "unknown top-level key \"colour\"",
            "tenant name \"Acme\" must match",
            "tenants.beta: give webhook_secret or webhook_secret_file, not both",
            "tenants.gamma: unknown key \"provider_api_kee\"",
            "tenants.gamma: previous_webhook_secret needs a webhook_secret",
            "tenants.delta.provider_api_key must be a string",
            "tenants.epsilon.webhook_secret_file: cannot read /nonexistent/missing-file",
            "tenants.zeta.provider_api_key is empty",
        ];
        for expected in expected {
            assert!(
                problems.iter().any(|problem| problem.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
        let shown = problems.join("\n");
        for secret in ["SECRET-A", "SECRET-B", "SECRET-C", "SECRET-D", "12345"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
    }

    #[test]
    fn a_syntax_error_names_the_line_but_not_its_text() {
        let (_, problems) = parse("[tenants.acme]\nwebhook_secret = \"TOPSECRET\nprovider_api_key = 1\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("not valid TOML at line 2"), "{problems:?}");
        assert!(!problems[0].contains("TOPSECRET"), "{problems:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let (tenants, problems) = parse("[tenants.acme]\nprovider_api_key = \"APIKEY\"\nwebhook_secret = \"HOOK\"\n");
        assert!(problems.is_empty(), "{problems:?}");
        let shown = format!("{tenants:?}");
        assert!(!shown.contains("APIKEY") && !shown.contains("HOOK"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_tenant_is_served_by_its_own_key_only() {
        let client = |base: &str| {
            archive::VendorClient::new(archive::VendorConfig::new(url::Url::parse(base).unwrap(), "k".into())).unwrap()
        };
        let base = |clients: &VendorClients, tenant: &str| {
            clients
                .for_tenant(tenant)
                .map(|client| client.decision_url("s").host_str().unwrap_or_default().to_string())
        };
        let own = BTreeMap::from([("acme".to_string(), client("https://acme.example"))]);
        let with_file = VendorClients::new(true, Some(client("https://global.example")), own.clone());
        assert_eq!(base(&with_file, "acme").unwrap(), "acme.example");
        assert_eq!(base(&with_file, "default").unwrap(), "global.example");
        assert_eq!(base(&with_file, "eve"), Err(NoVendorKey::Tenant("eve".into())));

        let without_file = VendorClients::new(false, Some(client("https://global.example")), BTreeMap::new());
        assert_eq!(base(&without_file, "eve").unwrap(), "global.example");
        assert_eq!(base(&VendorClients::default(), "acme"), Err(NoVendorKey::NotConfigured));
    }
}

//! Gateway keys: `tollgate keys add/list/revoke/mode`. A key is shown once when created; the
//! store (`<data dir>/gateway/keys.json`, owned by the gateway, rewritten atomically) keeps
//! only its SHA-256 hash, its id and the attribution it carries (team, service, environment,
//! cost center, tenant), plus an optional per-key mode and a temporary mode override.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::{Mode, ModeOverride};

/// One stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    /// SHA-256 of the key, lowercase hex.
    pub hash: String,
    pub team: String,
    pub service: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Per-key mode (`report`, `enforce`, `quarantine`); the global mode when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Temporary mode until an instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_until: Option<String>,
}

impl KeyRecord {
    pub fn mode(&self) -> Option<Mode> {
        self.mode.as_deref().and_then(Mode::parse)
    }

    pub fn mode_override(&self) -> Option<ModeOverride> {
        let mode = Mode::parse(self.override_mode.as_deref()?)?;
        let until = self.override_until.as_deref()?.parse().ok()?;
        Some(ModeOverride { mode, until })
    }
}

/// The key store file of a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway").join("keys.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    keys: Vec<KeyRecord>,
}

/// SHA-256 of a key, lowercase hex.
pub fn hash_key(key: &str) -> String {
    let d = sha2::Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Reads every stored key (an absent file is an empty store).
pub fn load(data_dir: &Path) -> Result<Vec<KeyRecord>> {
    let p = store_path(data_dir);
    match std::fs::read_to_string(&p) {
        Ok(t) => {
            let f: File = serde_json::from_str(&t)
                .with_context(|| format!("{}: not a Tollgate key store", p.display()))?;
            Ok(f.keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

fn save(data_dir: &Path, keys: Vec<KeyRecord>) -> Result<()> {
    let p = store_path(data_dir);
    let dir = p.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".keys.json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&File { keys })?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot replace {}", p.display()))?;
    Ok(())
}

/// What `keys add` needs.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub team: String,
    pub service: String,
    pub environment: String,
    pub cost_center: Option<String>,
    pub tenant: Option<String>,
    pub mode: Option<String>,
}

/// Creates a key; returns `(key, record)`. The key is not stored anywhere.
pub fn add(data_dir: &Path, n: &NewKey) -> Result<(String, KeyRecord)> {
    for (flag, v) in [
        ("--team", &n.team),
        ("--service", &n.service),
        ("--environment", &n.environment),
    ] {
        if v.trim().is_empty() {
            bail!("{flag}: empty; give a value");
        }
    }
    n.environment
        .parse::<tollgate_core::Environment>()
        .map_err(|e| anyhow::anyhow!("--environment: {e}"))?;
    if let Some(m) = &n.mode
        && Mode::parse(m).is_none()
    {
        bail!("--mode {m:?}: use report, enforce or quarantine");
    }
    let mut keys = load(data_dir)?;
    let key = format!("tg_{}", crate::ids::random_hex(24));
    let rec = KeyRecord {
        key_id: format!("key_{}", crate::ids::random_hex(6)),
        hash: hash_key(&key),
        team: n.team.clone(),
        service: n.service.clone(),
        environment: n.environment.clone(),
        cost_center: n.cost_center.clone(),
        tenant: n.tenant.clone(),
        created_at: Timestamp::now().to_string(),
        revoked_at: None,
        mode: n.mode.clone(),
        override_mode: None,
        override_until: None,
    };
    keys.push(rec.clone());
    save(data_dir, keys)?;
    Ok((key, rec))
}

fn update(data_dir: &Path, key_id: &str, f: impl FnOnce(&mut KeyRecord)) -> Result<KeyRecord> {
    let mut keys = load(data_dir)?;
    let Some(k) = keys.iter_mut().find(|k| k.key_id == key_id) else {
        bail!(
            "no key with id {key_id:?} in {}; `tollgate keys list` shows the ids",
            store_path(data_dir).display()
        );
    };
    f(k);
    let out = k.clone();
    save(data_dir, keys)?;
    Ok(out)
}

/// Revokes a key (kept in the store, refused from now on).
pub fn revoke(data_dir: &Path, key_id: &str) -> Result<KeyRecord> {
    update(data_dir, key_id, |k| {
        if k.revoked_at.is_none() {
            k.revoked_at = Some(Timestamp::now().to_string());
        }
    })
}

/// Sets a key's mode, or a temporary override until an instant.
pub fn set_mode(
    data_dir: &Path,
    key_id: &str,
    mode: &str,
    until: Option<&str>,
) -> Result<KeyRecord> {
    if Mode::parse(mode).is_none() {
        bail!("mode {mode:?}: use report, enforce or quarantine");
    }
    let until = match until {
        None => None,
        Some(u) => Some(
            u.parse::<Timestamp>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--until {u:?}: not an RFC 3339 instant (e.g. 2026-12-01T00:00:00Z)"
                    )
                })?
                .to_string(),
        ),
    };
    update(data_dir, key_id, |k| match until {
        Some(u) => {
            k.override_mode = Some(mode.to_string());
            k.override_until = Some(u);
        }
        None => {
            k.mode = Some(mode.to_string());
            k.override_mode = None;
            k.override_until = None;
        }
    })
}

/// Keys by hash, as the gateway looks them up.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_hash: HashMap<String, KeyRecord>,
}

impl KeyTable {
    pub fn new(keys: Vec<KeyRecord>) -> KeyTable {
        KeyTable {
            by_hash: keys.into_iter().map(|k| (k.hash.clone(), k)).collect(),
        }
    }

    /// The record of a presented key, if it exists (revoked or not).
    pub fn lookup(&self, key: &str) -> Option<&KeyRecord> {
        self.by_hash.get(&hash_key(key))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn only_the_hash_is_stored_and_revocation_sticks() {
        let d = tempfile::tempdir().unwrap();
        let (key, rec) = add(
            d.path(),
            &NewKey {
                team: "search".into(),
                service: "api".into(),
                environment: "prod".into(),
                ..NewKey::default()
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(store_path(d.path())).unwrap();
        assert!(!text.contains(&key), "the key itself must not be stored");
        assert!(text.contains(&hash_key(&key)));
        let t = KeyTable::new(load(d.path()).unwrap());
        assert_eq!(t.lookup(&key).unwrap().team, "search");
        assert!(t.lookup("tg_other").is_none());
        revoke(d.path(), &rec.key_id).unwrap();
        let t = KeyTable::new(load(d.path()).unwrap());
        assert!(t.lookup(&key).unwrap().revoked_at.is_some());
        let e = add(
            d.path(),
            &NewKey {
                team: "t".into(),
                service: "s".into(),
                environment: "production".into(),
                ..NewKey::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--environment") && e.contains("production"),
            "{e}"
        );
    }
}

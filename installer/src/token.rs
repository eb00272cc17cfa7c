//! Join tokens: what an admin hands to a machine so that it may join the
//! cluster. A token is single purpose (joining, with one node profile or
//! any), expires (24 h unless told otherwise), can be revoked, and carries
//! the pin of the cluster CA (the SHA-256 of its public key, as kubeadm's
//! discovery hash), so that the joining machine trusts only the cluster it
//! was told of, whatever answers on the address it was given.
//!
//! The text handed out is `ID.SECRET.PIN`; the master keeps only the ID, a
//! SHA-256 of the secret, the role, the times and whether it was revoked,
//! in `STATE/tokens.json` (0600).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::durable::write_durably;
use crate::state_dir::StateDir;

/// How long a token lives unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// One token as the master keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// The public half, shown in lists and logs.
    pub id: String,
    /// SHA-256 (hex) of the secret half.
    pub secret_sha256: String,
    /// The node profile it joins as; None for any.
    pub role: Option<String>,
    /// Unix seconds it was made.
    pub created: u64,
    /// Unix seconds it stops working.
    pub expires: u64,
    /// Revoked by the admin.
    #[serde(default)]
    pub revoked: bool,
    /// Nodes that joined with it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

impl TokenRecord {
    /// `valid`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if now >= self.expires {
            "expired"
        } else {
            "valid"
        }
    }
}

/// A token as handed out, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The public half.
    pub id: String,
    /// The secret half.
    pub secret: String,
    /// The cluster CA's pin: `sha256:<hex>` of its public key.
    pub ca_pin: String,
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not of the form `ID.SECRET.PIN`.
    #[error("the token is not of the form ID.SECRET.PIN that `tele token create` prints")]
    Malformed,
    /// No such token, or the secret does not match.
    #[error("the cluster does not know this token")]
    Unknown,
    /// Past its expiry.
    #[error("token {0} has expired")]
    Expired(String),
    /// Revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// Made for another node profile.
    #[error("token {id} is for nodes of profile `{allowed}`, not `{asked}`")]
    WrongRole {
        /// The token.
        id: String,
        /// The profile it is for.
        allowed: String,
        /// The profile asked for.
        asked: String,
    },
}

impl TokenError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            TokenError::Malformed => "copy the whole join command that `./install` or `tele token create` printed",
            TokenError::Unknown | TokenError::Expired(_) | TokenError::Revoked(_) => {
                "make a new one on a master with `tele token create` and use the command it prints"
            }
            TokenError::WrongRole { .. } => {
                "use the --role the token was made for, or make a token for this role with `tele token create --role ROLE`"
            }
        }
    }
}

impl Token {
    /// `ID.SECRET`: what the joining node shows the master (the pin stays with it).
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// A token from its credential `ID.SECRET`, without a pin (the master's side).
    pub fn from_credential(text: &str) -> Result<Token, TokenError> {
        let mut t: Token = format!("{text}.{}", "0".repeat(64)).parse()?;
        t.ca_pin.clear();
        Ok(t)
    }
}

impl std::str::FromStr for Token {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Token, TokenError> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            [id, secret, pin] if hex(id, 6) && hex(secret, 32) && hex(pin, 64) => Ok(Token {
                id: id.to_ascii_lowercase(),
                secret: secret.to_ascii_lowercase(),
                ca_pin: format!("sha256:{}", pin.to_ascii_lowercase()),
            }),
            _ => Err(TokenError::Malformed),
        }
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pin = self.ca_pin.strip_prefix("sha256:").unwrap_or(&self.ca_pin);
        write!(f, "{}.{}.{pin}", self.id, self.secret)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SHA-256 of `s`, in hex.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `bytes` random bytes from the kernel, in hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(buf))
}

/// The tokens of the install in `state`.
pub struct TokenStore {
    state: StateDir,
}

impl TokenStore {
    /// The store of the install in `state`.
    pub fn new(state: &StateDir) -> TokenStore {
        TokenStore {
            state: state.clone(),
        }
    }

    /// Where the tokens are kept (0600).
    pub fn file(&self) -> std::path::PathBuf {
        self.state.root().join("tokens.json")
    }

    /// Every token, oldest first.
    pub fn list(&self) -> anyhow::Result<Vec<TokenRecord>> {
        match std::fs::read(self.file()) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("`{}` is damaged: {e}", self.file().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn save(&self, tokens: &[TokenRecord]) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(tokens)?;
        bytes.push(b'\n');
        write_durably(&self.file(), &bytes, 0o600)?;
        Ok(())
    }

    /// A new token for `role` (None: any profile) living `ttl`, pinned to
    /// the cluster CA `ca_pin`.
    pub fn create(
        &self,
        role: Option<&str>,
        ttl: Duration,
        ca_pin: &str,
    ) -> anyhow::Result<(Token, TokenRecord)> {
        let mut tokens = self.list()?;
        let token = Token {
            id: random_hex(3)?,
            secret: random_hex(16)?,
            ca_pin: ca_pin.to_string(),
        };
        let created = now();
        let record = TokenRecord {
            id: token.id.clone(),
            secret_sha256: sha256_hex(&token.secret),
            role: role.map(String::from),
            created,
            expires: created.saturating_add(ttl.as_secs()),
            revoked: false,
            used_by: Vec::new(),
        };
        tokens.push(record.clone());
        self.save(&tokens)?;
        Ok((token, record))
    }

    /// Revokes token `id`; an error when there is none.
    pub fn revoke(&self, id: &str) -> anyhow::Result<TokenRecord> {
        let mut tokens = self.list()?;
        let Some(t) = tokens.iter_mut().find(|t| t.id == id) else {
            anyhow::bail!("there is no token {id}\nhint: `tele token list` shows the tokens");
        };
        t.revoked = true;
        let out = t.clone();
        self.save(&tokens)?;
        Ok(out)
    }

    /// Checks `token` for a node joining as `role`; the record when it may.
    pub fn check(&self, token: &Token, role: Option<&str>) -> Result<TokenRecord, TokenError> {
        let tokens = self.list().map_err(|_| TokenError::Unknown)?;
        let t = tokens
            .iter()
            .find(|t| t.id == token.id && t.secret_sha256 == sha256_hex(&token.secret))
            .ok_or(TokenError::Unknown)?;
        match t.state(now()) {
            "revoked" => return Err(TokenError::Revoked(t.id.clone())),
            "expired" => return Err(TokenError::Expired(t.id.clone())),
            _ => {}
        }
        if let (Some(allowed), Some(asked)) = (&t.role, role) {
            if allowed != asked {
                return Err(TokenError::WrongRole {
                    id: t.id.clone(),
                    allowed: allowed.clone(),
                    asked: asked.to_string(),
                });
            }
        }
        Ok(t.clone())
    }

    /// Records that `node` joined with token `id`.
    pub fn record_use(&self, id: &str, node: &str) -> anyhow::Result<()> {
        let mut tokens = self.list()?;
        if let Some(t) = tokens.iter_mut().find(|t| t.id == id) {
            if !t.used_by.iter().any(|n| n == node) {
                t.used_by.push(node.to_string());
            }
        }
        self.save(&tokens)
    }
}

/// Parses a duration like `24h`, `30m`, `7d` or `90s`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 24h, 30m or 7d"))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| *s <= 10 * 365 * 86400)
        .ok_or_else(|| format!("`{text}`: a token may live at most 3650d"))?;
    if secs == 0 {
        return Err("a token must live longer than 0 s".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn a_token_joins_until_it_is_revoked_and_only_for_its_role() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(&StateDir::new(dir.path()));
        let (token, record) = store.create(Some("worker"), DEFAULT_TTL, PIN).unwrap();
        let text = token.to_string();
        let parsed: Token = text.parse().unwrap();
        assert_eq!(parsed, token);
        let shown = Token::from_credential(&token.credential()).unwrap();
        assert_eq!(
            (shown.id.as_str(), shown.secret.as_str()),
            (token.id.as_str(), token.secret.as_str())
        );
        assert_eq!(parsed.ca_pin, PIN);
        assert_eq!(store.check(&parsed, Some("worker")).unwrap().id, record.id);
        assert_eq!(store.check(&parsed, None).unwrap().id, record.id);
        assert!(matches!(
            store.check(&parsed, Some("master")),
            Err(TokenError::WrongRole { .. })
        ));
        let mut wrong = parsed.clone();
        wrong.secret = "0".repeat(32);
        assert_eq!(store.check(&wrong, None), Err(TokenError::Unknown));
        store.revoke(&token.id).unwrap();
        assert_eq!(
            store.check(&parsed, None),
            Err(TokenError::Revoked(token.id.clone()))
        );
        // Only a hash of the secret is kept, 0600.
        let file = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!file.contains(&token.secret));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("tokens.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(&StateDir::new(dir.path()));
        let (token, _) = store.create(None, Duration::from_secs(1), PIN).unwrap();
        let mut tokens = store.list().unwrap();
        tokens[0].expires = now() - 1;
        store.save(&tokens).unwrap();
        assert_eq!(
            store.check(&token, None),
            Err(TokenError::Expired(token.id.clone()))
        );
    }

    #[test]
    fn tokens_and_durations_parse_strictly() {
        assert_eq!("abc".parse::<Token>(), Err(TokenError::Malformed));
        assert_eq!(
            format!("abcdef.{}.{}", "0".repeat(31), "1".repeat(64)).parse::<Token>(),
            Err(TokenError::Malformed)
        );
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("3w").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
        assert!(parse_ttl("5000000000000000h").is_err());
        assert!(parse_ttl("3651d").is_err());
    }
}

//! Who may connect: the users table (`[fe.users] name = "password"`) shared by every front
//! end, and the bearer tokens Flight SQL hands out after a basic-auth handshake.
//!
//! Trust rule: with no users configured, clients on loopback are trusted under any user
//! name (the quickstart needs no password) and everyone else is refused; with users
//! configured, every client must present a user's password or a token issued for one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;

/// How long a bearer token stays valid after its handshake.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Bound of the token table: beyond it the oldest tokens are forgotten (their clients
/// handshake again), so a client that handshakes in a loop cannot grow memory forever.
const TOKENS_MAX: usize = 65_536;

/// Why a client was refused. The message is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The credentials a request carries in its `authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl Credentials {
    /// Parses an `authorization` header value (`Basic base64(user:password)` or
    /// `Bearer token`).
    pub fn parse(header: Option<&str>) -> Result<Self, AuthError> {
        let Some(h) = header else {
            return Ok(Credentials::None);
        };
        let bad = || AuthError("malformed authorization header".into());
        let (scheme, rest) = h.trim().split_once(' ').ok_or_else(bad)?;
        if scheme.eq_ignore_ascii_case("basic") {
            // Go's Flight client (ADBC) sends unpadded base64, others padded: accept both.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let raw = lenient.decode(rest.trim()).map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (user, password) = text.split_once(':').ok_or_else(bad)?;
            Ok(Credentials::Basic {
                user: user.to_string(),
                password: password.to_string(),
            })
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Credentials::Bearer(rest.trim().to_string()))
        } else {
            Err(bad())
        }
    }
}

/// Users, issued tokens and the trust rule.
#[derive(Debug)]
pub struct Authenticator {
    users: BTreeMap<String, String>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// Compares in time independent of where the first difference is, so response times do not
/// leak how much of a password was right.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl Authenticator {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        Self {
            users,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Whether passwords are required at all.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// The configured users' names (`pg_roles`).
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// A configured user's password (pgwire's SCRAM and MD5 exchanges derive their
    /// verifiers from it).
    pub fn password_of(&self, user: &str) -> Option<String> {
        self.users.get(user).cloned()
    }

    /// Checks a user's password (the check pgwire and the Flight handshake share).
    pub fn check_password(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<String, AuthError> {
        if !self.has_users() {
            return self.trusted(peer, user);
        }
        match self.users.get(user) {
            Some(p) if same(p, password) => Ok(user.to_string()),
            _ => Err(AuthError(format!(
                "password authentication failed for user \"{user}\""
            ))),
        }
    }

    fn trusted(&self, peer: Option<SocketAddr>, user: &str) -> Result<String, AuthError> {
        match peer {
            Some(p) if p.ip().is_loopback() => Ok(if user.is_empty() {
                "eddy".to_string()
            } else {
                user.to_string()
            }),
            _ => Err(AuthError(
                "no users are configured ([fe.users]), so only loopback clients are trusted".into(),
            )),
        }
    }

    /// Authenticates one request; returns the user it runs as.
    pub fn authenticate(
        &self,
        creds: &Credentials,
        peer: Option<SocketAddr>,
    ) -> Result<String, AuthError> {
        match creds {
            Credentials::Basic { user, password } => self.check_password(user, password, peer),
            Credentials::Bearer(token) => {
                let mut tokens = self.tokens.lock();
                match tokens.get(token) {
                    Some((user, at)) if at.elapsed() < TOKEN_TTL => Ok(user.clone()),
                    Some(_) => {
                        tokens.remove(token);
                        Err(AuthError("token expired; handshake again".into()))
                    }
                    None if !self.has_users() => self.trusted(peer, ""),
                    None => Err(AuthError("invalid token; handshake again".into())),
                }
            }
            Credentials::None if self.has_users() => Err(AuthError(
                "authentication required: handshake with a user name and password".into(),
            )),
            Credentials::None => self.trusted(peer, ""),
        }
    }

    /// Issues a bearer token for an authenticated user.
    pub fn issue_token(&self, user: &str) -> String {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut tokens = self.tokens.lock();
        if tokens.len() >= TOKENS_MAX {
            tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        }
        if tokens.len() >= TOKENS_MAX {
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), (user.to_string(), Instant::now()));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Option<SocketAddr> {
        Some("127.0.0.1:5000".parse().expect("valid address"))
    }

    fn remote() -> Option<SocketAddr> {
        Some("10.1.2.3:5000".parse().expect("valid address"))
    }

    #[test]
    fn without_users_only_loopback_is_trusted() {
        let a = Authenticator::new(BTreeMap::new());
        assert_eq!(
            a.authenticate(&Credentials::None, loopback()).unwrap(),
            "eddy"
        );
        assert!(a.authenticate(&Credentials::None, remote()).is_err());
        let basic = Credentials::Basic {
            user: "bob".into(),
            password: "anything".into(),
        };
        assert_eq!(a.authenticate(&basic, loopback()).unwrap(), "bob");
    }

    #[test]
    fn with_users_passwords_and_tokens_are_checked() {
        let a = Authenticator::new(BTreeMap::from([("ann".to_string(), "s3cret".to_string())]));
        assert!(a.authenticate(&Credentials::None, loopback()).is_err());
        let wrong = Credentials::Basic {
            user: "ann".into(),
            password: "s3cre".into(),
        };
        assert_eq!(
            a.authenticate(&wrong, loopback()).unwrap_err().0,
            "password authentication failed for user \"ann\""
        );
        let right = Credentials::Basic {
            user: "ann".into(),
            password: "s3cret".into(),
        };
        assert_eq!(a.authenticate(&right, remote()).unwrap(), "ann");
        let t = a.issue_token("ann");
        assert_eq!(
            a.authenticate(&Credentials::Bearer(t), remote()).unwrap(),
            "ann"
        );
        assert!(a
            .authenticate(&Credentials::Bearer("forged".into()), loopback())
            .is_err());
    }

    #[test]
    fn parses_headers() {
        assert_eq!(
            Credentials::parse(Some("Basic YW5uOnM6Mw==")).unwrap(),
            Credentials::Basic {
                user: "ann".into(),
                password: "s:3".into()
            }
        );
        assert_eq!(
            Credentials::parse(Some("Basic YW5uOnM6Mw")).unwrap(),
            Credentials::Basic {
                user: "ann".into(),
                password: "s:3".into()
            },
            "unpadded, as Go's client sends it"
        );
        assert_eq!(
            Credentials::parse(Some("Bearer abc")).unwrap(),
            Credentials::Bearer("abc".into())
        );
        assert!(Credentials::parse(Some("Digest x")).is_err());
    }
}

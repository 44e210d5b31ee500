//! Connection startup: who may connect (trust on loopback without users; SCRAM-SHA-256 or
//! MD5 against `[fe.users]` with them), the ParameterStatus values drivers read, the
//! BackendKeyData a CancelRequest quotes, and the registry that routes a CancelRequest to
//! the session it names.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use parking_lot::Mutex;
use pgwire::api::auth::md5pass::{hash_md5_password, Md5PasswordAuthStartupHandler};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
    METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rand::RngCore;

use super::session::{Session, SERVER_VERSION};
use crate::auth::Authenticator;

/// How clients prove who they are when `[fe.users]` is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMethod {
    ScramSha256,
    Md5,
}

impl PasswordMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "scram-sha-256" | "scram" => Some(Self::ScramSha256),
            "md5" => Some(Self::Md5),
            _ => None,
        }
    }
}

/// Live sessions by backend pid, so a CancelRequest (which arrives on its own
/// connection) finds the statement to stop. Entries are weak: a closed connection's
/// session goes away with it.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<i32, (bytes::Bytes, Weak<Session>)>>,
}

impl Registry {
    /// The live session of a backend pid (`pg_cancel_backend`, `pg_terminate_backend`).
    pub(crate) fn session(&self, pid: i32) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .get(&pid)
            .and_then(|(_, w)| w.upgrade())
    }
}

impl crate::catalog::pg::ListBackends for Registry {
    /// Every open session, for `pg_stat_activity`.
    fn backends(&self) -> Vec<crate::catalog::pg::Backend> {
        self.sessions
            .lock()
            .iter()
            .filter_map(|(pid, (_, w))| {
                let s = w.upgrade()?;
                let a = s.activity.lock().clone();
                Some(crate::catalog::pg::Backend {
                    pid: *pid,
                    user: s.user.clone(),
                    application_name: s.get("application_name").unwrap_or_default(),
                    client_addr: s.client.map(|a| a.ip().to_string()),
                    client_port: s.client.map(|a| a.port() as i32),
                    backend_start_micros: s.started_micros,
                    state: a.state.to_string(),
                    query: a.query,
                    xact_start_micros: a.xact_start_micros,
                    query_start_micros: a.query_start_micros,
                    state_change_micros: a.state_change_micros,
                })
            })
            .collect()
    }
}

impl Registry {
    fn register(&self, pid: i32, secret: bytes::Bytes, session: &Arc<Session>) {
        let mut m = self.sessions.lock();
        // Forget closed sessions now and then so the map stays bounded by live ones.
        if m.len() > 1024 {
            m.retain(|_, (_, w)| w.strong_count() > 0);
        }
        m.insert(pid, (secret, Arc::downgrade(session)));
    }
}

#[async_trait]
impl CancelHandler for Registry {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let target = {
            let m = self.sessions.lock();
            m.get(&req.pid)
                .filter(|(secret, _)| *secret == req.secret_key.to_bytes())
                .and_then(|(_, w)| w.upgrade())
        };
        // A wrong key is ignored silently, as PostgreSQL does.
        if let Some(s) = target {
            s.cancel();
        }
    }
}

/// ParameterStatus values sent after authentication.
#[derive(Debug)]
pub(crate) struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let session = Session::new(
            client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_else(|| "eddy".into()),
            client.metadata(),
        );
        let mut p = HashMap::new();
        for name in [
            "server_version",
            "server_encoding",
            "client_encoding",
            "DateStyle",
            "IntervalStyle",
            "TimeZone",
            "integer_datetimes",
            "standard_conforming_strings",
            "is_superuser",
            "in_hot_standby",
            "default_transaction_read_only",
            "application_name",
            "session_authorization",
        ] {
            if let Some(v) = session.get(name) {
                p.insert(name.to_string(), v);
            }
        }
        p.insert("server_version".into(), SERVER_VERSION.into());
        Some(p)
    }
}

/// Passwords from `[fe.users]`, in the form the chosen method needs. An unknown user gets
/// a random password, so the failure looks exactly like a wrong password.
#[derive(Debug)]
struct Users {
    auth: Arc<Authenticator>,
    method: PasswordMethod,
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let mut salt = vec![
            0u8;
            if self.method == PasswordMethod::Md5 {
                4
            } else {
                16
            }
        ];
        rand::thread_rng().fill_bytes(&mut salt);
        let password = self.auth.password_of(user).unwrap_or_else(|| {
            let mut r = [0u8; 24];
            rand::thread_rng().fill_bytes(&mut r);
            r.iter().map(|b| format!("{b:02x}")).collect()
        });
        Ok(match self.method {
            PasswordMethod::ScramSha256 => {
                let salted = gen_salted_password(&password, &salt, 4096);
                Password::new(Some(salt), salted)
            }
            PasswordMethod::Md5 => {
                let hashed = hash_md5_password(user, &password, &salt);
                Password::new(Some(salt), hashed.into_bytes())
            }
        })
    }
}

/// Settings shared by every connection's startup.
#[derive(Debug)]
pub(crate) struct StartupConfig {
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) method: PasswordMethod,
    pub(crate) registry: Arc<Registry>,
    pub(crate) pids: Arc<RandomPidSecretKeyGenerator>,
    /// `fe.pg_max_connections`, which `SHOW max_connections` reports.
    pub(crate) max_connections: usize,
}

/// One connection's startup handler (the SCRAM and MD5 exchanges keep per-connection
/// state, so a fresh one is made for each connection).
pub(crate) struct Startup {
    config: Arc<StartupConfig>,
    /// The connection's termination token, handed to its session.
    terminated: tokio_util::sync::CancellationToken,
    scram: Option<SASLAuthStartupHandler<Parameters>>,
    md5: Option<Md5PasswordAuthStartupHandler<Users, Parameters>>,
    /// Opened while `fe.pg_max_connections` others were open.
    refused: bool,
}

struct SharedPids(Arc<RandomPidSecretKeyGenerator>);

impl PidSecretKeyGenerator for SharedPids {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, pgwire::messages::startup::SecretKey) {
        self.0.generate(client)
    }
}

impl Startup {
    pub(crate) fn new(
        config: Arc<StartupConfig>,
        terminated: tokio_util::sync::CancellationToken,
        refused: bool,
    ) -> Self {
        let (mut scram, mut md5) = (None, None);
        if config.auth.has_users() {
            let users = Arc::new(Users {
                auth: Arc::clone(&config.auth),
                method: config.method,
            });
            let pids: Arc<dyn PidSecretKeyGenerator> =
                Arc::new(SharedPids(Arc::clone(&config.pids)));
            match config.method {
                PasswordMethod::ScramSha256 => {
                    let mut s = ScramAuth::new(users);
                    s.set_iterations(4096);
                    scram = Some(
                        SASLAuthStartupHandler::new(Arc::new(Parameters))
                            .with_scram(s)
                            .with_pid_secret_key_generator(pids),
                    );
                }
                PasswordMethod::Md5 => {
                    md5 = Some(
                        Md5PasswordAuthStartupHandler::new(users, Arc::new(Parameters))
                            .with_pid_secret_key_generator(pids),
                    );
                }
            }
        }
        Self {
            config,
            terminated,
            scram,
            md5,
            refused,
        }
    }

    /// Creates the session once the client is in, and registers it for cancels.
    fn open_session<C: ClientInfo>(&self, client: &C) {
        if client.session_extensions().get::<Arc<Session>>().is_some() {
            return;
        }
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_else(|| "eddy".into());
        let session = Arc::new(
            Session::new(user, client.metadata())
                .with_server_setting("max_connections", self.config.max_connections.to_string())
                .with_termination(self.terminated.clone())
                .with_client(client.socket_addr()),
        );
        let (pid, secret) = client.pid_and_secret_key();
        self.config
            .registry
            .register(pid, secret.to_bytes(), &session);
        client.session_extensions().insert(session);
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.refused {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "53300".into(),
                "sorry, too many clients already".into(),
            ))));
        }
        if let Some(h) = &self.scram {
            h.on_startup(client, message).await?;
        } else if let Some(h) = &self.md5 {
            h.on_startup(client, message).await?;
        } else if let PgWireFrontendMessage::Startup(ref startup) = message {
            // No users: trust, but only on loopback (see crate::auth).
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let user = client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            if let Err(e) = self
                .config
                .auth
                .check_password(&user, "", Some(client.socket_addr()))
            {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28000".into(),
                    e.0,
                ))));
            }
            let (pid, secret) = self.config.pids.generate(client);
            client.set_pid_and_secret_key(pid, secret);
            self.open_session(client);
            finish_authentication(client, &Parameters).await?;
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.open_session(client);
        }
        Ok(())
    }
}

/// Sends a ParameterStatus (after SET changes a reported setting).
pub(crate) async fn report<C>(client: &mut C, name: String, value: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::ParameterStatus(
            pgwire::messages::startup::ParameterStatus::new(name, value),
        ))
        .await?;
    Ok(())
}

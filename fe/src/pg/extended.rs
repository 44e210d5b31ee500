//! The extended query protocol: Parse plans a statement once (DataFusion types its `$n`
//! placeholders), Describe reports parameter and result types, Bind decodes parameters in
//! text or binary, Execute runs the portal (pgwire suspends it at the row limit).

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::copy;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{send_execution_response, ExtendedQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::PgWireConnectionState;
use pgwire::api::{ClientInfo, ClientPortalStore, Type, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Parse, ParseComplete, Sync as PgSync,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::PgWireBackendMessage;

use super::cursor::CursorStmt;
use super::encode::{self, Output};
use super::session::{pg_error, Session, SessionStmt};
use super::{eddy_error, session_of, user_error, PgHandler, PgStatement};
use crate::error::classify;
use eddy_proto::BeService;

/// Parses and plans statements for the extended protocol.
#[derive(Debug)]
pub(crate) struct Parser {
    handler: Arc<PgHandler>,
}

/// The result columns of a statement, as Describe reports them.
fn result_fields(
    stmt: &PgStatement,
    format: &Format,
    be: &dyn BeService,
    session: Option<&Session>,
) -> PgWireResult<Arc<Vec<FieldInfo>>> {
    let out = Output::describe();
    match stmt {
        // FETCH returns the cursor's columns (psycopg 3 and asyncpg describe it before
        // they execute it).
        PgStatement::Cursor(CursorStmt::Fetch { name, .. }) => match session {
            Some(s) => {
                let (schema, columns) = s.cursors.schema(name).map_err(user_error)?;
                Ok(Arc::new(encode::fields(
                    &schema,
                    format,
                    &out.with_columns(&columns),
                )?))
            }
            None => Ok(Arc::default()),
        },
        PgStatement::Planned(p) if PgStatement::returns_rows(p.plan()) => Ok(Arc::clone(
            &p.encodings
                .get(
                    p.plan().schema().inner(),
                    format,
                    &out.with_columns(p.columns(be)),
                )?
                .fields,
        )),
        PgStatement::Session(SessionStmt::Show(name)) => {
            let names: Vec<String> = if name.eq_ignore_ascii_case("all") {
                vec!["name".into(), "setting".into()]
            } else {
                vec![name.to_ascii_lowercase()]
            };
            let schema = arrow::datatypes::Schema::new(
                names
                    .iter()
                    .map(|n| arrow::datatypes::Field::new(n, DataType::Utf8, false))
                    .collect::<Vec<_>>(),
            );
            Ok(Arc::new(encode::fields(&schema, format, &out)?))
        }
        _ => Ok(Arc::default()),
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session_of(client)?;
        let mut statements = self.handler.engine.parse(sql).map_err(|e| eddy_error(&e))?;
        match statements.len() {
            0 => Ok(None),
            1 => {
                let parsed = statements.remove(0);
                Ok(Some(self.handler.classify(client, &session, parsed).await?))
            }
            _ => Err(user_error(pg_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ))),
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        match stmt {
            PgStatement::Planned(p) => Ok(p
                .prepared
                .param_types()
                .iter()
                .map(|t| {
                    t.as_ref()
                        .and_then(|t| arrow_pg::datatypes::into_pg_type(t).ok())
                        // PostgreSQL resolves a parameter nothing constrains as text.
                        .unwrap_or(Type::TEXT)
                })
                .collect()),
            _ => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(result_fields(
            stmt,
            format.unwrap_or(&Format::UnifiedText),
            self.handler.engine.be().as_ref(),
            None,
        )?
        .as_ref()
        .clone())
    }
}

/// The extended query handler every connection shares.
#[derive(Debug)]
pub(crate) struct Extended {
    handler: Arc<PgHandler>,
    parser: Arc<Parser>,
}

impl Extended {
    pub(crate) fn new(handler: Arc<PgHandler>) -> Self {
        Self {
            parser: Arc::new(Parser {
                handler: Arc::clone(&handler),
            }),
            handler,
        }
    }
}

/// A portal's parameters, decoded with the client's declared types (or DataFusion's
/// inferred ones) and cast to the inferred types, so an int2 parameter compares with a
/// bigint column.
fn bind_parameters(
    inferred: &[Option<DataType>],
    portal: &Portal<PgStatement>,
) -> PgWireResult<ParamValues> {
    let refs: Vec<Option<&DataType>> = inferred.iter().map(|t| t.as_ref()).collect();
    let ParamValues::List(mut values) =
        arrow_pg::datatypes::df::deserialize_parameters(portal, &refs)?
    else {
        return Err(user_error(pg_error("08P01", "unexpected named parameters")));
    };
    for (i, v) in values.iter_mut().enumerate() {
        if let Some(Some(t)) = inferred.get(i) {
            if &v.value.data_type() != t {
                v.value = v.value.cast_to(t).map_err(|e| {
                    user_error(pg_error(
                        "22P02",
                        format!("parameter ${}: {}", i + 1, classify(e)),
                    ))
                })?;
            }
        }
    }
    Ok(ParamValues::List(values))
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = PgStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        self.parse(client, &session, message).await
    }

    /// pgwire's, answering BindComplete without a flush (see [`super::conn`]).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        bind(client, &message).await
    }

    /// pgwire's, except that a portal run for all its rows (the usual Execute) streams
    /// them to the client as they come, where pgwire's portal collects them first.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.max_rows != 0 || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            _ => return self._on_execute(client, message).await,
        };
        {
            // Run once only: a portal run to its end has no more rows.
            let mut state = portal.state.lock().await;
            if !matches!(*state, PortalExecutionState::Initial) {
                drop(state);
                return self._on_execute(client, message).await;
            }
            *state = PortalExecutionState::Finished;
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        match self.do_query(client, portal.as_ref(), 0).await? {
            Response::Query(mut results) => {
                let mut rows = 0;
                while let Some(row) = results.data_rows.next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    rows += 1;
                }
                let tag = Tag::new(&results.command_tag).with_rows(rows);
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
            }
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::TransactionStart(tag) => {
                send_execution_response(client, tag).await?;
                status = status.to_in_transaction_state();
            }
            Response::TransactionEnd(tag) => {
                send_execution_response(client, tag).await?;
                status = status.to_idle_state();
                client.portal_store().rm_portal(DEFAULT_NAME);
            }
            Response::Error(e) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                    .await?;
                status = status.to_error_state();
            }
            Response::CopyIn(r) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                copy::send_copy_in_response(client, r).await?;
            }
            Response::CopyOut(r) => copy::send_copy_out_response(client, r).await?,
            Response::CopyBoth(r) => {
                client.set_state(PgWireConnectionState::CopyInProgress(true));
                copy::send_copy_both_response(client, r).await?;
            }
        }
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(status);
        }
        Ok(())
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = client.transaction_status();
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    /// Like pgwire's, but a statement without result columns answers NoData (as
    /// PostgreSQL does) even when it has parameters.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        self.describe(client, &session, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client)?;
        let stmt = portal.statement.statement.clone();
        let bind = |types: &[Option<DataType>]| bind_parameters(types, portal);
        let sql = session
            .statement_sql
            .lock()
            .get(&portal.statement.id)
            .cloned();
        session.statement_started(sql.as_deref().unwrap_or_default());
        let before = client.transaction_status();
        let result = self
            .handler
            .run(
                client,
                &session,
                stmt,
                (portal.parameter_len() > 0).then_some(&bind as _),
                &portal.result_column_format,
            )
            .await;
        super::activity::finish_with(&session, before, result)
    }
}

impl Extended {
    async fn parse<C>(&self, client: &mut C, session: &Session, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        session
            .statement_sql
            .lock()
            .insert(name.clone(), Arc::from(message.query.as_str()));
        if message.name.is_some() {
            session.prepared.lock().insert(name);
        }
        client
            .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn describe<C>(
        &self,
        client: &mut C,
        session: &Session,
        message: Describe,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let be = self.handler.engine.be().as_ref();
        let (params, fields) = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(stmt)) => {
                    let server = self.parser.get_parameter_types(&stmt.statement)?;
                    let n = server.len().max(stmt.parameter_types.len());
                    let params: Vec<u32> = (0..n)
                        .map(|i| {
                            stmt.parameter_types
                                .get(i)
                                .cloned()
                                .flatten()
                                .or_else(|| server.get(i).cloned())
                                .unwrap_or(Type::TEXT)
                                .oid()
                        })
                        .collect();
                    let fields =
                        result_fields(&stmt.statement, &Format::UnifiedText, be, Some(session))?;
                    (Some(params), fields)
                }
                Some(Entry::Empty) => (Some(vec![]), Arc::default()),
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => (
                    None,
                    result_fields(
                        &portal.statement.statement,
                        &portal.result_column_format,
                        be,
                        Some(session),
                    )?,
                ),
                Some(Entry::Empty) => (None, Arc::default()),
                // A cursor DECLAREd in SQL is a portal too: psycopg 3 describes its
                // server-side cursors by name.
                None => match session.cursors.schema(name) {
                    Ok((schema, columns)) => (
                        None,
                        Arc::new(encode::fields(
                            &schema,
                            &Format::UnifiedText,
                            &Output::describe().with_columns(&columns),
                        )?),
                    ),
                    Err(_) => return Err(PgWireError::PortalNotFound(name.to_owned())),
                },
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        if let Some(p) = params {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(p),
                ))
                .await?;
        }
        if fields.is_empty() {
            client
                .feed(PgWireBackendMessage::NoData(NoData::new()))
                .await?;
        } else {
            client
                .feed(PgWireBackendMessage::RowDescription(RowDescription::new(
                    fields.iter().map(Into::into).collect(),
                )))
                .await?;
        }
        Ok(())
    }
}

/// pgwire's Bind, answering BindComplete without a flush (see [`super::conn`]).
async fn bind<C>(client: &mut C, message: &Bind) -> PgWireResult<()>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore<Statement = PgStatement>,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
    let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
    match client.portal_store().get_statement(statement_name) {
        Some(Entry::Value(statement)) => {
            let portal = Portal::try_new(message, statement)?;
            client.portal_store().put_portal(Arc::new(portal));
        }
        Some(Entry::Empty) => {
            if !message.parameters.is_empty() {
                return Err(user_error(pg_error(
                    "08P01",
                    format!(
                        "bind message supplies {} parameters, but prepared statement \"{statement_name}\" requires 0",
                        message.parameters.len()
                    ),
                )));
            }
            client.portal_store().put_empty_portal(portal_name);
        }
        None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
    }
    client
        .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
        .await?;
    Ok(())
}

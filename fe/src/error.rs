//! Classifies errors once, at the FE, into [`ErrorCode`]s with the messages psql users
//! expect, and maps them to pgwire's `ErrorInfo`.

use datafusion::error::DataFusionError;
use eddy_proto::{Error, ErrorCode};
use pgwire::error::{ErrorInfo, PgWireError};

/// Wraps a BE error so it survives a trip through DataFusion.
pub fn to_datafusion(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn quoted_last(msg: &str) -> Option<String> {
    let start = msg.find('\'')? + 1;
    let end = start + msg[start..].find('\'')?;
    Some(msg[start..end].rsplit('.').next()?.to_string())
}

/// An error in the values a function was given, with the SQLSTATE PostgreSQL gives it
/// (22P02 for input that does not parse, 22008 for a date out of range ...): it passes
/// through DataFusion and [`classify`] keeps it as it is.
pub(crate) fn data_error<T>(
    code: ErrorCode,
    msg: impl Into<String>,
) -> datafusion::common::Result<T> {
    Err(to_datafusion(Error::new(code, msg)))
}

/// The name in DataFusion's "Invalid function 'name'." planning error.
fn undefined_function(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("Invalid function '")?;
    Some(&rest[..rest.find('\'')?])
}

/// Turns any DataFusion error into an eddy error, after unwrapping to its root cause.
pub fn classify(e: DataFusionError) -> Error {
    let root = e.find_root();
    match root {
        DataFusionError::External(inner) => {
            if let Some(ours) = inner.downcast_ref::<Error>() {
                return ours.clone();
            }
            Error::new(ErrorCode::QueryFailed, inner.to_string())
        }
        DataFusionError::SQL(p, _) => {
            Error::new(ErrorCode::SyntaxError, format!("syntax error: {p}"))
        }
        DataFusionError::SchemaError(se, _) => {
            let msg = se.to_string();
            if msg.contains("No field named") {
                let col = msg
                    .split("No field named ")
                    .nth(1)
                    .map(|r| {
                        r.split(['.', ' '])
                            .next()
                            .unwrap_or(r)
                            .trim_matches('"')
                            .to_string()
                    })
                    .unwrap_or_default();
                Error::new(
                    ErrorCode::ColumnNotFound,
                    format!("column \"{col}\" does not exist"),
                )
            } else {
                Error::new(ErrorCode::QueryFailed, msg)
            }
        }
        DataFusionError::Plan(msg) if msg.contains("not found") && msg.starts_with("table") => {
            let name = quoted_last(msg).unwrap_or_default();
            Error::new(
                ErrorCode::TableNotFound,
                format!("relation \"{name}\" does not exist"),
            )
        }
        DataFusionError::Plan(msg) => match undefined_function(msg) {
            Some(name) => Error::new(
                ErrorCode::UndefinedFunction,
                format!("function {name}() does not exist"),
            ),
            None if msg.contains("No function matches the given name and argument types") => {
                Error::new(ErrorCode::UndefinedFunction, msg.clone())
            }
            None => Error::new(ErrorCode::QueryFailed, msg.clone()),
        },
        // A subquery left in the plan, which DataFusion says in its own terms: one
        // correlated other than by equality, or IN (subquery) outside WHERE.
        DataFusionError::NotImplemented(msg)
            if msg.starts_with("Physical plan does not support logical expression")
                && (msg.contains("Subquery") || msg.contains("Exists")) =>
        {
            Error::new(
                ErrorCode::Unsupported,
                "subquery not supported here: a subquery may refer to the outer query only \
                 in equality conditions (inner.col = outer.col), and IN (subquery) runs only \
                 as a WHERE condition",
            )
        }
        // SQL DataFusion does not support: PostgreSQL's feature_not_supported (0A000).
        DataFusionError::NotImplemented(msg) => Error::new(ErrorCode::Unsupported, msg.clone()),
        DataFusionError::ResourcesExhausted(msg) => {
            Error::new(ErrorCode::ResourceExhausted, msg.clone())
        }
        DataFusionError::ArrowError(ae, _) => {
            let msg = ae.to_string();
            let code = if msg.contains("Cast error") || msg.contains("Parser error") {
                return Error::new(ErrorCode::InvalidValue, invalid_input(&msg));
            } else if msg.contains("Divide by zero") {
                return Error::new(ErrorCode::DivisionByZero, "division by zero");
            } else if msg.contains("Arithmetic overflow") {
                ErrorCode::OutOfRange
            } else {
                ErrorCode::QueryFailed
            };
            Error::new(code, msg)
        }
        // DataFusion's uncorrelated scalar subquery, in PostgreSQL's words.
        DataFusionError::Execution(msg) if msg.contains("subquery returned more than one row") => {
            Error::new(
                ErrorCode::CardinalityViolation,
                "more than one row returned by a subquery used as an expression",
            )
        }
        DataFusionError::Execution(msg) if msg.contains("Cast error") => {
            Error::new(ErrorCode::InvalidValue, invalid_input(msg))
        }
        other => Error::new(ErrorCode::QueryFailed, other.to_string()),
    }
}

/// Arrow's words for text that does not parse as a type (`Cast error: Cannot cast string
/// 'abc' to value of Int32 type`) in PostgreSQL's: `invalid input syntax for type
/// integer: "abc"`. Other messages are kept.
fn invalid_input(msg: &str) -> String {
    let parsed = msg
        .split_once("Cannot cast string '")
        .and_then(|(_, rest)| rest.rsplit_once("' to value of "))
        .and_then(|(value, rest)| Some((value, rest.strip_suffix(" type")?)));
    let Some((value, arrow_type)) = parsed else {
        return msg.to_string();
    };
    let pg_type = match arrow_type {
        "Int8" | "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Date32" | "Date64" => "date",
        t if t.starts_with("Decimal") => "numeric",
        t if t.starts_with("Timestamp") => "timestamp",
        _ => return msg.to_string(),
    };
    format!("invalid input syntax for type {pg_type}: \"{value}\"")
}

pub fn error_info(e: &Error) -> ErrorInfo {
    ErrorInfo::new(
        "ERROR".to_owned(),
        e.code.sqlstate().to_owned(),
        e.message.clone(),
    )
}

pub fn to_pgwire(e: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

/// The gRPC status code Flight SQL clients get for an eddy error. Exhaustive on purpose:
/// a new [`ErrorCode`] must choose its status here.
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::Internal | ErrorCode::QueryFailed | ErrorCode::StorageCorrupt => {
            tonic::Code::Internal
        }
        ErrorCode::Unsupported => tonic::Code::Unimplemented,
        ErrorCode::Cancelled => tonic::Code::Cancelled,
        ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorCode::SyntaxError
        | ErrorCode::InvalidValue
        | ErrorCode::NotNullViolation
        | ErrorCode::InvalidStatement
        | ErrorCode::StringTooLong
        | ErrorCode::WrongObjectType
        | ErrorCode::DivisionByZero
        | ErrorCode::AmbiguousFunction
        | ErrorCode::OutOfRange
        | ErrorCode::CardinalityViolation
        | ErrorCode::DatetimeOverflow
        | ErrorCode::StatementTooComplex
        | ErrorCode::ProgramLimitExceeded
        | ErrorCode::InvalidTableDefinition
        | ErrorCode::DecodeInput
        | ErrorCode::InvalidSourceOption => tonic::Code::InvalidArgument,
        ErrorCode::TableNotFound
        | ErrorCode::ColumnNotFound
        | ErrorCode::SourceNotFound
        | ErrorCode::UndefinedFunction => tonic::Code::NotFound,
        ErrorCode::TableAlreadyExists
        | ErrorCode::ColumnAlreadyExists
        | ErrorCode::SourceAlreadyExists => tonic::Code::AlreadyExists,
        ErrorCode::DependentObjects => tonic::Code::FailedPrecondition,
        ErrorCode::StorageIo => tonic::Code::Unavailable,
    }
}

/// An eddy error as a gRPC status: the message psql would show, and the SQLSTATE in the
/// `x-eddy-sqlstate` trailer for clients that want the precise condition.
pub fn to_status(e: &Error) -> tonic::Status {
    let mut status = tonic::Status::new(grpc_code(e.code), e.message.clone());
    if let Ok(v) = e.code.sqlstate().parse() {
        status.metadata_mut().insert("x-eddy-sqlstate", v);
    }
    status
}

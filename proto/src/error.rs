//! The error vocabulary shared by every crate and every edge (pgwire, HTTP, Flight).

use snafu::Snafu;

/// Error codes that cross node boundaries. Ranges: 1xxx common, 2xxx SQL, 3xxx query,
/// 4xxx catalog, 5xxx storage, 6xxx ingest. Never renumber a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u32)]
pub enum ErrorCode {
    /// Something inside eddy failed that the user cannot fix.
    Internal = 1000,
    /// A feature the statement asks for is not supported.
    Unsupported = 1001,
    /// The request was cancelled.
    Cancelled = 1002,
    /// A bounded resource (memory pool, queue) is exhausted.
    ResourceExhausted = 1003,
    /// SQL could not be parsed.
    SyntaxError = 2000,
    /// A value has the wrong type or cannot be converted.
    InvalidValue = 2001,
    /// A NOT NULL column got no value.
    NotNullViolation = 2002,
    /// A statement is valid SQL but not allowed here (e.g. DELETE without a primary key).
    InvalidStatement = 2003,
    /// A value is longer than its column's type allows (`varchar(n)`, `char(n)`).
    StringTooLong = 2004,
    /// An object is not of the kind the statement needs (the definition of an aggregate
    /// asked for as a function's).
    WrongObjectType = 2005,
    /// Division by zero.
    DivisionByZero = 2006,
    /// An arithmetic result does not fit its type (`2147483647 + 1` in integer).
    OutOfRange = 2007,
    /// A subquery used as an expression returned more than one row.
    CardinalityViolation = 2008,
    /// A date, time or interval result does not fit its type.
    DatetimeOverflow = 2009,
    /// A statement nests expressions deeper than planning can follow.
    StatementTooComplex = 2010,
    /// A value would be larger than one value may be (`repeat('x', 1500000000)`).
    ProgramLimitExceeded = 2011,
    /// Planning or executing a query failed.
    QueryFailed = 3000,
    /// No function (or operator) of that name takes those arguments.
    UndefinedFunction = 3001,
    /// A function name given without arguments names several functions.
    AmbiguousFunction = 3002,
    /// The table does not exist.
    TableNotFound = 4000,
    /// The table already exists.
    TableAlreadyExists = 4001,
    /// The column does not exist.
    ColumnNotFound = 4002,
    /// The column already exists.
    ColumnAlreadyExists = 4003,
    /// A table definition is invalid (bad option, bad key).
    InvalidTableDefinition = 4004,
    /// The source does not exist.
    SourceNotFound = 4005,
    /// The source already exists.
    SourceAlreadyExists = 4006,
    /// The object is still used by another (a table a source writes into).
    DependentObjects = 4007,
    /// Reading or writing storage failed (disk, object store).
    StorageIo = 5000,
    /// Stored data failed a checksum or could not be decoded.
    StorageCorrupt = 5001,
    /// Input rows could not be decoded.
    DecodeInput = 6000,
    /// A source option is missing or has a bad value.
    InvalidSourceOption = 6001,
}

impl ErrorCode {
    /// The PostgreSQL SQLSTATE users of psql and drivers expect for this code.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorCode::Internal => "XX000",
            ErrorCode::Unsupported => "0A000",
            ErrorCode::Cancelled => "57014",
            ErrorCode::ResourceExhausted => "53000",
            ErrorCode::SyntaxError => "42601",
            ErrorCode::InvalidValue => "22P02",
            ErrorCode::NotNullViolation => "23502",
            ErrorCode::InvalidStatement => "42P17",
            ErrorCode::StringTooLong => "22001",
            ErrorCode::WrongObjectType => "42809",
            ErrorCode::DivisionByZero => "22012",
            ErrorCode::OutOfRange => "22003",
            ErrorCode::CardinalityViolation => "21000",
            ErrorCode::DatetimeOverflow => "22008",
            ErrorCode::StatementTooComplex => "54001",
            ErrorCode::ProgramLimitExceeded => "54000",
            ErrorCode::QueryFailed => "XX000",
            ErrorCode::UndefinedFunction => "42883",
            ErrorCode::AmbiguousFunction => "42725",
            ErrorCode::TableNotFound => "42P01",
            ErrorCode::TableAlreadyExists => "42P07",
            ErrorCode::ColumnNotFound => "42703",
            ErrorCode::ColumnAlreadyExists => "42701",
            ErrorCode::InvalidTableDefinition => "42P16",
            ErrorCode::StorageIo => "58030",
            ErrorCode::StorageCorrupt => "XX001",
            ErrorCode::DecodeInput => "22P02",
            ErrorCode::SourceNotFound => "42704",
            ErrorCode::SourceAlreadyExists => "42710",
            ErrorCode::DependentObjects => "2BP01",
            ErrorCode::InvalidSourceOption => "22023",
        }
    }

    /// The HTTP status for this code on the HTTP ingest endpoint.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Internal | ErrorCode::QueryFailed | ErrorCode::StorageCorrupt => 500,
            ErrorCode::StorageIo => 503,
            ErrorCode::ResourceExhausted => 429,
            ErrorCode::Cancelled => 499,
            ErrorCode::Unsupported => 501,
            ErrorCode::TableNotFound
            | ErrorCode::ColumnNotFound
            | ErrorCode::SourceNotFound
            | ErrorCode::UndefinedFunction => 404,
            ErrorCode::TableAlreadyExists
            | ErrorCode::ColumnAlreadyExists
            | ErrorCode::SourceAlreadyExists
            | ErrorCode::DependentObjects => 409,
            ErrorCode::SyntaxError
            | ErrorCode::AmbiguousFunction
            | ErrorCode::InvalidValue
            | ErrorCode::NotNullViolation
            | ErrorCode::InvalidStatement
            | ErrorCode::StringTooLong
            | ErrorCode::WrongObjectType
            | ErrorCode::DivisionByZero
            | ErrorCode::OutOfRange
            | ErrorCode::CardinalityViolation
            | ErrorCode::DatetimeOverflow
            | ErrorCode::StatementTooComplex
            | ErrorCode::ProgramLimitExceeded
            | ErrorCode::InvalidTableDefinition
            | ErrorCode::DecodeInput
            | ErrorCode::InvalidSourceOption => 400,
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::StorageIo | ErrorCode::ResourceExhausted)
    }
}

/// An error with its code and a message meant for the user.
#[derive(Debug, Snafu, Clone)]
#[snafu(display("{message}"))]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Typed literal values and the simple predicates the FE pushes to the BE for pruning.
//!
//! Predicates are advisory: the BE uses them to skip partitions, segments and row groups,
//! and the FE always re-applies the full filter, so a predicate the BE does not understand
//! is simply ignored.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A literal value, comparable within its own kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Days since the Unix epoch.
    Date(i32),
    /// Microseconds since the Unix epoch (UTC).
    TimestampMicros(i64),
    /// Unscaled value and scale.
    Decimal(i128, i8),
}

impl Scalar {
    /// Compares two scalars of compatible kinds; `None` when they cannot be compared.
    pub fn compare(&self, other: &Scalar) -> Option<Ordering> {
        use Scalar::*;
        match (self, other) {
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Float(a), Float(b)) => a.partial_cmp(b),
            (Int(a), Float(b)) => (*a as f64).partial_cmp(b),
            (Float(a), Int(b)) => a.partial_cmp(&(*b as f64)),
            (Str(a), Str(b)) => Some(a.cmp(b)),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (TimestampMicros(a), TimestampMicros(b)) => Some(a.cmp(b)),
            (Date(a), TimestampMicros(b)) => Some((*a as i64 * 86_400_000_000).cmp(b)),
            (TimestampMicros(a), Date(b)) => Some(a.cmp(&(*b as i64 * 86_400_000_000))),
            (Decimal(a, sa), Decimal(b, sb)) if sa == sb => Some(a.cmp(b)),
            (Decimal(a, s), Int(b)) | (Int(b), Decimal(a, s)) => {
                let ord = (*a as f64 / 10f64.powi(*s as i32)).partial_cmp(&(*b as f64))?;
                Some(if matches!(self, Decimal(..)) {
                    ord
                } else {
                    ord.reverse()
                })
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PredicateOp {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// `column op value`, or `column IN (values)` when `op` is `Eq` and `values` has several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    pub column: String,
    pub op: PredicateOp,
    pub values: Vec<Scalar>,
}

impl Predicate {
    /// Whether a range `[min, max]` of a column may hold a row satisfying this predicate.
    /// Unknown comparisons answer `true` (cannot prune).
    pub fn may_match(&self, min: &Scalar, max: &Scalar) -> bool {
        let may = |v: &Scalar| -> bool {
            let (Some(lo), Some(hi)) = (min.compare(v), max.compare(v)) else {
                return true;
            };
            match self.op {
                PredicateOp::Eq => lo != Ordering::Greater && hi != Ordering::Less,
                PredicateOp::Lt => lo == Ordering::Less,
                PredicateOp::LtEq => lo != Ordering::Greater,
                PredicateOp::Gt => hi == Ordering::Greater,
                PredicateOp::GtEq => hi != Ordering::Less,
            }
        };
        if matches!(min, Scalar::Null) || matches!(max, Scalar::Null) {
            return true;
        }
        self.values.iter().any(may)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_pruning() {
        let p = Predicate {
            column: "x".into(),
            op: PredicateOp::Gt,
            values: vec![Scalar::Int(10)],
        };
        assert!(!p.may_match(&Scalar::Int(1), &Scalar::Int(10)));
        assert!(p.may_match(&Scalar::Int(1), &Scalar::Int(11)));
        let eq = Predicate {
            column: "s".into(),
            op: PredicateOp::Eq,
            values: vec![Scalar::Str("b".into()), Scalar::Str("z".into())],
        };
        assert!(eq.may_match(&Scalar::Str("a".into()), &Scalar::Str("c".into())));
        assert!(!eq.may_match(&Scalar::Str("c".into()), &Scalar::Str("y".into())));
    }
}

//! Prepared statements that skip DataFusion's analyzer and logical optimizer on every run
//! after the first.
//!
//! A statement parsed once and executed many times (psycopg 3 after five runs, asyncpg,
//! pgJDBC, ADBC) has the same logical plan each time but for its parameters. [`Prepared`]
//! keeps the optimized plan, placeholders and all, and binds each execution's values into
//! it, so a run costs physical planning only. Scans still take their snapshot when the run
//! is planned, so every run reads current data.
//!
//! The optimized plan is reused only while it would come out the same:
//! - for the same [`Planning`] (the session's settings and the engine's generation);
//! - when every function in it is immutable: the optimizer folds `now()`,
//!   `current_date` and other stable functions to the instant it runs;
//! - when every placeholder is typed, so binding cannot change a column's type;
//! - when it has no aggregate: the rollup rewrite picks a materialized view from the
//!   views' current state (backfill, drops) each time it runs.
//!
//! Anything else is bound and optimized afresh on each run, as before.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast, Volatility};
use datafusion::physical_plan::ExecutionPlan;
use eddy_proto::Result;
use parking_lot::Mutex;

use crate::error::classify;
use crate::point_query::PointPlan;
use crate::query::Planning;

/// A planned statement kept between Parse and its executions.
pub struct Prepared {
    plan: LogicalPlan,
    params: Vec<Option<DataType>>,
    reusable: bool,
    optimized: Mutex<Option<Optimized>>,
    /// The physical plan of a constant query without parameters (`SELECT 1`, a ping),
    /// with the [`Planning::id`] it was planned with.
    physical: Mutex<Option<(u64, Arc<dyn ExecutionPlan>)>>,
}

struct Optimized {
    /// The [`Planning::id`] it was optimized with.
    planning: u64,
    plan: LogicalPlan,
    /// How it runs when it is a point query (see [`crate::point_query`]).
    point: Option<Arc<PointPlan>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("params", &self.params)
            .field("reusable", &self.reusable)
            .finish()
    }
}

/// What a run executes: a plan with its parameters bound, optimized or not yet.
pub struct Bound {
    pub plan: LogicalPlan,
    pub optimized: bool,
}

impl Prepared {
    pub fn new(plan: LogicalPlan) -> Result<Self> {
        let params = placeholder_types(&plan)?;
        let reusable = is_query(&plan)
            && params.iter().all(Option::is_some)
            && !has_aggregate(&plan)
            && all_immutable(&plan);
        Ok(Self {
            plan,
            params,
            reusable,
            optimized: Mutex::new(None),
            physical: Mutex::new(None),
        })
    }

    /// The plan as parsed, placeholders unbound.
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// The placeholder types, by position (`$1` first); `None` where nothing constrains one.
    pub fn param_types(&self) -> &[Option<DataType>] {
        &self.params
    }

    /// The plan to run with `params` bound: the optimized plan kept from an earlier run
    /// when it can be reused (see the module documentation), else the parsed plan.
    pub fn bind(&self, planning: &Planning, params: Option<ParamValues>) -> Result<Bound> {
        let bind = |plan: LogicalPlan| match params {
            Some(p) => plan.with_param_values(p).map_err(classify),
            None => Ok(plan),
        };
        if !self.reusable {
            return Ok(Bound {
                plan: bind(self.plan.clone())?,
                optimized: false,
            });
        }
        let cached = {
            let slot = self.optimized.lock();
            slot.as_ref()
                .filter(|o| o.planning == planning.id)
                .map(|o| o.plan.clone())
        };
        let plan = match cached {
            Some(p) => p,
            None => match planning.state.optimize(&self.plan) {
                Ok(p) => {
                    *self.optimized.lock() = Some(Optimized {
                        planning: planning.id,
                        point: PointPlan::of(&p).map(Arc::new),
                        plan: p.clone(),
                    });
                    p
                }
                // Some plans only optimize once their values are known (`LIMIT $1`).
                Err(_) => {
                    return Ok(Bound {
                        plan: bind(self.plan.clone())?,
                        optimized: false,
                    })
                }
            },
        };
        Ok(Bound {
            plan: bind(plan)?,
            optimized: true,
        })
    }
}

impl Prepared {
    /// The point plan of the plan optimized with `planning`, when it is a point query (it
    /// is known from the second run on).
    pub fn point(&self, planning: &Planning) -> Option<Arc<PointPlan>> {
        match &*self.optimized.lock() {
            Some(o) if o.planning == planning.id => o.point.clone(),
            _ => None,
        }
    }

    /// The kept physical plan, for a constant query planned with `planning`.
    pub fn physical(&self, planning: &Planning) -> Option<Arc<dyn ExecutionPlan>> {
        match &*self.physical.lock() {
            Some((id, p)) if *id == planning.id => Some(Arc::clone(p)),
            _ => None,
        }
    }

    /// Keeps the physical plan of `bound` when it can run again: a constant query whose
    /// optimized plan was reused, so its functions are immutable.
    pub fn keep_physical(&self, bound: &Bound, planning: &Planning, p: &Arc<dyn ExecutionPlan>) {
        if bound.optimized && self.params.is_empty() && crate::fast_plan::is_constant(&bound.plan) {
            *self.physical.lock() = Some((planning.id, Arc::clone(p)));
        }
    }
}

/// Whether a plan is a query (not DDL, DML, EXPLAIN or a statement).
fn is_query(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
    )
}

fn has_aggregate(plan: &LogicalPlan) -> bool {
    plan.exists(|p| Ok(matches!(p, LogicalPlan::Aggregate(_))))
        .unwrap_or(true)
}

/// Whether every function the plan calls returns the same for the same arguments (and no
/// `@@variable` is read).
fn all_immutable(plan: &LogicalPlan) -> bool {
    let mut ok = true;
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                ok &= match e {
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::ScalarVariable(..) => false,
                    _ => true,
                };
                Ok(if ok {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    ok
}

/// The placeholder types DataFusion inferred, by position (`$1` first).
pub fn placeholder_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types().map_err(classify)?;
    // DataFusion leaves `$1::bigint` untyped; PostgreSQL types it by the cast.
    let _ = plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                {
                    if let Expr::Placeholder(ph) = expr.as_ref() {
                        let slot = types.entry(ph.id.clone()).or_insert(None);
                        if slot.is_none() {
                            *slot = Some(field.data_type().clone());
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    let n = types
        .keys()
        .filter_map(|k| k.strip_prefix('$').and_then(|i| i.parse::<usize>().ok()))
        .max()
        .unwrap_or(0);
    Ok((1..=n)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect())
}

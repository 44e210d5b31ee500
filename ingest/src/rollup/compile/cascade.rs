//! Cascades: a view over another view, composed into aggregates over the root table.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What a parent output column is, in terms of the root rows.
enum ParentColumn<'a> {
    Key(&'a Expr),
    Agg(&'a AggPlan),
}

fn parent_column<'a>(parent: &'a RollupPlan, name: &str) -> Option<ParentColumn<'a>> {
    let i = parent.schema.index_of(name).ok()?;
    let j = parent.output_columns[i]?;
    let keys = parent.group_logical.len();
    if j < keys {
        Some(ParentColumn::Key(&parent.group_logical[j]))
    } else {
        parent.aggs.get(j - keys).map(ParentColumn::Agg)
    }
}

fn agg_parts(e: &Expr) -> Option<(&str, &AggregateFunction)> {
    match strip_alias(e) {
        Expr::AggregateFunction(f) => Some((f.func.name(), f)),
        _ => None,
    }
}

/// `first_value(x ORDER BY k)` where `k` orders like the parent's event time.
fn ordered_by_parent_time(order: &[SortExpr], parent: &RollupPlan) -> bool {
    let [s] = order else { return false };
    if !s.asc {
        return false;
    }
    let Expr::Column(c) = strip_alias(&s.expr) else {
        return false;
    };
    let Some(ParentColumn::Key(k)) = parent_column(parent, &c.name) else {
        return false;
    };
    matches!(
        (&parent.grouping, bucket_of(k)),
        (Grouping::Keys { bucket: Some(_) }, Some(_))
    )
}

fn compose_agg(child: &Expr, parent: &RollupPlan) -> Result<(Expr, usize)> {
    let cannot = |why: &str| {
        invalid(format!(
            "cannot cascade {child} from view \"{}\": {why}",
            parent.def.name
        ))
    };
    let (name, f) = agg_parts(child).ok_or_else(|| cannot("not an aggregate"))?;
    if f.params.distinct || f.params.filter.is_some() {
        return Err(cannot(
            "DISTINCT and FILTER need the parent's rows, which a view does not keep",
        ));
    }
    let [arg] = f.params.args.as_slice() else {
        return Err(cannot(
            "only one-argument aggregates of parent columns cascade",
        ));
    };
    let Expr::Column(c) = strip_alias(arg) else {
        return Err(cannot(
            "not derivable: the argument must be an aggregate column of the parent view \
             (count(*) would count the parent's rows; use sum() of its count column)",
        ));
    };
    let Some(ParentColumn::Agg(p)) = parent_column(parent, &c.name) else {
        return Err(cannot(&format!(
            "\"{}\" is not a plain aggregate of the parent view",
            c.name
        )));
    };
    let (pname, pf) = agg_parts(&p.logical).ok_or_else(|| cannot("parent is not an aggregate"))?;
    let ok = match (name, pname) {
        ("sum", "sum") | ("sum", "count") | ("min", "min") | ("max", "max") => {
            f.params.order_by.is_empty()
        }
        ("first_value", "first_value") | ("last_value", "last_value") => {
            ordered_by_parent_time(&f.params.order_by, parent) && pf.params.order_by.len() == 1
        }
        _ => false,
    };
    if !ok {
        return Err(cannot(&format!(
            "{name} over the parent's {pname} is not derivable (sum of sum or count, min of min, \
             max of max, first_value/last_value ordered by the parent's time bucket are)"
        )));
    }
    let index = parent
        .aggs
        .iter()
        .position(|a| std::ptr::eq(a, p))
        .expect("p is one of parent.aggs");
    Ok((strip_alias(&p.logical).clone(), index))
}

/// Replaces references to the parent's key columns by the parent's key expressions.
fn compose_key(e: &Expr, parent: &RollupPlan) -> Result<Expr> {
    e.clone()
        .transform(|e| {
            if let Expr::Column(c) = &e {
                return match parent_column(parent, &c.name) {
                    Some(ParentColumn::Key(k)) => Ok(Transformed::yes(strip_alias(k).clone())),
                    _ => Err(DataFusionError::Plan(format!(
                        "\"{}\" is not a grouping key of view \"{}\"; a cascading view groups and filters by its parent's keys",
                        c.name, parent.def.name
                    ))),
                };
            }
            Ok(Transformed::no(e))
        })
        .map(|t| t.data)
        .map_err(df_err)
}

pub(super) fn build_cascade(
    def: &RollupDef,
    state: &SessionState,
    shape: Shape,
    parent: Arc<RollupPlan>,
) -> Result<RollupPlan> {
    if matches!(parent.grouping, Grouping::Session(_)) {
        return Err(invalid(format!(
            "cannot cascade from session view \"{}\"",
            parent.def.name
        )));
    }
    if def.lateness_secs.is_some() && parse_lateness(def) != parent.lateness_micros {
        return Err(invalid(format!(
            "a cascading view takes its lateness from \"{}\"; leave lateness out",
            parent.def.name
        )));
    }
    let input = Arc::clone(&parent.input_schema);
    let (group_logical, group_exprs, _, filter) = keys_and_filter(state, &shape, &input, |e| {
        compose_key(&unqualify(e.clone())?, &parent)
    })?;
    let mut aggs = Vec::new();
    let mut cascade = Cascade::default();
    for e in &shape.aggr_exprs {
        let (composed, index) = compose_agg(&unqualify(e.clone())?, &parent)?;
        aggs.push(agg_plan(state, &composed, &input)?);
        cascade.aggs.push(index);
    }
    let over_parent = unqualified_schema(&parent.schema)?;
    for g in &shape.group_exprs {
        cascade
            .keys
            .push(physical(state, &unqualify(g.clone())?, &over_parent)?);
    }
    cascade.filter = conjunction(
        shape
            .predicates
            .iter()
            .map(|p| unqualify(p.clone()))
            .collect::<Result<Vec<_>>>()?,
    )
    .map(|p| physical(state, &p, &over_parent))
    .transpose()?;
    for (a, f) in aggs
        .iter()
        .zip(shape.agg_schema.fields().iter().skip(group_exprs.len()))
    {
        if a.expr.field().data_type() != f.data_type() {
            return Err(invalid(format!(
                "cannot cascade \"{}\": its type {} differs from the composed {}",
                f.name(),
                f.data_type(),
                a.expr.field().data_type()
            )));
        }
    }
    let mut bucket = None;
    for (i, g) in group_logical.iter().enumerate() {
        if let Some((w, time)) = bucket_of(g) {
            // date_bin(1h, date_bin(1m, ts)): the event time is the innermost argument.
            let mut time = time;
            while let Some((_, inner)) = bucket_of(&time) {
                time = inner;
            }
            if bucket.is_none() {
                bucket = Some(Bucket {
                    key: i,
                    width_micros: w,
                    time: physical(state, &time, &input)?,
                });
            }
        }
    }
    let parts = Parts {
        source: parent.def.name.clone(),
        root_table: parent.root_table.clone(),
        parent: Some(parent.def.name.clone()),
        input_schema: input,
        filter,
        group_exprs,
        group_logical,
        grouping: Grouping::Keys { bucket },
        aggs,
        lateness_micros: parent.lateness_micros,
        cascade,
    };
    finish(def, state, &shape, parts)
}

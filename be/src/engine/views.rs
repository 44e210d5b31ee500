//! The engine's side of materialized views: compile, attach to the root table, backfill,
//! restore at start, drop. The state itself is in [`crate::rollups`].

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_ingest::rollup::{compile, Feed, Relation, Rollup, RollupPlan};
use eddy_proto::{Error, ErrorCode, Result, RollupDef, RollupInfo, TableDef};
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::{decode_ipc, Engine};
use crate::manifest;
use crate::rollups::{view_index, ViewState};
use crate::scan::plan_scan;
use crate::table::Table;

/// Resolves names for the view compiler from fixed maps of tables and views.
pub(crate) fn lookup_from(
    tables: BTreeMap<String, TableDef>,
    views: BTreeMap<String, Arc<RollupPlan>>,
) -> Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync> {
    Arc::new(move |name: &str| {
        if let Some(t) = tables.get(name) {
            return Some(Relation::Table(t.clone()));
        }
        views.get(name).map(|v| Relation::View(Arc::clone(v)))
    })
}

fn view_missing(name: &str) -> Error {
    Error::new(
        ErrorCode::TableNotFound,
        format!("materialized view \"{name}\" does not exist"),
    )
}

/// Loads the snapshot `st.flushed_views` names for `plan`, if it is usable.
pub(crate) async fn restore_view(
    engine_store: &Arc<dyn object_store::ObjectStore>,
    table: &Arc<Table>,
    plan: &Arc<RollupPlan>,
) -> Option<ViewState> {
    let reference = {
        let st = table.state.lock();
        st.flushed_views.get(&plan.def.name).cloned()
    }?;
    if !reference.matches(plan) {
        return None;
    }
    let loaded = async {
        let bytes = engine_store
            .get(&Path::from(reference.path.as_str()))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::StorageIo,
                    format!("read {}: {e}", reference.path),
                )
            })?
            .bytes()
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::StorageIo,
                    format!("read {}: {e}", reference.path),
                )
            })?;
        let batches = decode_ipc(&bytes)?;
        let mut rollup = Rollup::new(Arc::clone(plan))?;
        for b in &batches {
            rollup.restore(b, reference.counters())?;
        }
        Ok::<_, Error>(rollup)
    }
    .await;
    match loaded {
        Ok(rollup) => {
            let mut v = ViewState::new(rollup, true);
            v.snapshot_version = Some(v.rollup.version());
            Some(v)
        }
        Err(e) => {
            tracing::warn!(view = %plan.def.name, error = %e, "view snapshot unusable; rebuilding the view");
            None
        }
    }
}

impl Engine {
    pub(crate) fn view_lookup(&self) -> Arc<dyn Fn(&str) -> Option<Relation> + Send + Sync> {
        let tables = self
            .tables
            .read()
            .iter()
            .map(|(n, t)| (n.clone(), t.state.lock().def.clone()))
            .collect();
        lookup_from(tables, self.views.read().clone())
    }

    /// Attaches a new (or to-be-rebuilt) view to its table and aggregates the table's
    /// existing rows in the background; writes from now on reach it live.
    pub(crate) fn attach_with_backfill(
        &self,
        table: &Arc<Table>,
        plan: Arc<RollupPlan>,
    ) -> Result<()> {
        let name = plan.def.name.clone();
        let (snapshot, total) = {
            let mut st = table.state.lock();
            let total = st.live_rows();
            let scan = plan_scan(&st, None, &[], 1)?;
            let mut v = ViewState::new(Rollup::new(plan)?, total == 0);
            v.backfill_total = total;
            st.views.push(v);
            (scan, total)
        };
        if total == 0 {
            return Ok(());
        }
        let t = Arc::clone(table);
        tokio::spawn(async move {
            use eddy_proto::ScanSnapshot;
            let started = std::time::Instant::now();
            let mut next_log = 1_000_000u64;
            let finish = |err: Option<String>| {
                let mut st = t.state.lock();
                if let Some(i) = view_index(&st, &name) {
                    let v = &mut st.views[i];
                    match err {
                        Some(e) => v.last_error = Some(format!("backfill: {e}")),
                        None => v.complete = true,
                    }
                }
            };
            let mut stream = match snapshot.execute(0) {
                Ok(s) => s,
                Err(e) => return finish(Some(e.message)),
            };
            while let Some(batch) = stream.next().await {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => return finish(Some(e.message)),
                };
                let done = {
                    let mut st = t.state.lock();
                    let Some(i) = view_index(&st, &name) else {
                        return; // dropped meanwhile
                    };
                    let schema = std::sync::Arc::clone(&st.schema);
                    let v = &mut st.views[i];
                    let b = match crate::table::adapt_batch(&schema, &batch) {
                        Ok(b) => b,
                        Err(e) => {
                            v.last_error = Some(format!("backfill: {}", e.message));
                            continue;
                        }
                    };
                    if let Err(e) = v.rollup.apply(&b, Feed::Backfill) {
                        v.last_error = Some(format!("backfill: {}", e.message));
                    }
                    v.backfill_done += b.num_rows() as u64;
                    (v.backfill_done, v.backfill_total)
                };
                if done.0 >= next_log {
                    tracing::info!(view = %name, rows = done.0, of = done.1, "backfilling view");
                    next_log += 1_000_000;
                }
                tokio::task::yield_now().await;
            }
            tracing::info!(view = %name, seconds = started.elapsed().as_secs_f64(), "view backfilled");
            finish(None);
        });
        Ok(())
    }

    pub(crate) async fn create_view(&self, def: RollupDef, if_not_exists: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        if self.views.read().contains_key(&def.name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::TableAlreadyExists,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        if self.tables.read().contains_key(&def.name) {
            return Err(Error::new(
                ErrorCode::TableAlreadyExists,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        let plan = Arc::new(compile(&def, self.view_lookup()).await?);
        let table = self.get(&plan.root_table)?;
        if let Some(p) = &plan.parent {
            let st = table.state.lock();
            match view_index(&st, p) {
                Some(i) if st.views[i].complete => {}
                _ => {
                    return Err(Error::new(
                        ErrorCode::InvalidStatement,
                        format!(
                            "materialized view \"{p}\" is still backfilling; create \"{}\" once system.rollups shows it done",
                            def.name
                        ),
                    ))
                }
            }
        }
        let mut next = cat.clone();
        next.rollups.push(def.clone());
        self.store_catalog(&mut cat, next).await?;
        self.views
            .write()
            .insert(def.name.clone(), Arc::clone(&plan));
        match &plan.parent {
            Some(p) => {
                let mut child = Rollup::new(Arc::clone(&plan))?;
                let mut st = table.state.lock();
                let i = view_index(&st, p).ok_or_else(|| view_missing(p))?;
                child.absorb(&mut st.views[i].rollup)?;
                st.views.push(ViewState::new(child, true));
            }
            None => self.attach_with_backfill(&table, plan)?,
        }
        tracing::info!(view = %def.name, "materialized view created");
        Ok(())
    }

    pub(crate) async fn drop_view(&self, name: &str, if_exists: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        let Some(plan) = self.views.read().get(name).cloned() else {
            return if if_exists {
                Ok(())
            } else {
                Err(view_missing(name))
            };
        };
        if let Some(r) = self.rule_on(name) {
            return Err(Error::new(
                ErrorCode::DependentObjects,
                format!(
                    "cannot drop materialized view {name} because alert rule {r} watches it; DROP ALERT {r} first"
                ),
            ));
        }
        if let Some(child) = self
            .views
            .read()
            .values()
            .find(|v| v.parent.as_deref() == Some(name))
        {
            return Err(Error::new(
                ErrorCode::DependentObjects,
                format!(
                    "cannot drop materialized view {name} because materialized view {} depends on it",
                    child.def.name
                ),
            ));
        }
        let mut next = cat.clone();
        next.rollups.retain(|r| r.name != name);
        self.store_catalog(&mut cat, next).await?;
        self.views.write().remove(name);
        if let Ok(t) = self.get(&plan.root_table) {
            t.state.lock().views.retain(|v| v.name() != name);
        }
        Ok(())
    }

    /// The first view that reads `table` (directly or through a cascade).
    pub(crate) fn view_over(&self, table: &str) -> Option<String> {
        self.views
            .read()
            .values()
            .find(|v| v.root_table == table)
            .map(|v| v.def.name.clone())
    }

    pub(crate) fn view_info(&self, name: &str) -> Option<RollupInfo> {
        let plan = self.views.read().get(name).cloned()?;
        let t = self.get(&plan.root_table).ok()?;
        let mut st = t.state.lock();
        let i = view_index(&st, name)?;
        st.views[i].info().ok()
    }

    pub(crate) fn view_names(&self) -> Vec<String> {
        self.views.read().keys().cloned().collect()
    }

    /// Restores views at start: each from its snapshot when the manifest has a usable one,
    /// otherwise (with every view cascading from it) marked for a rebuild after replay.
    pub(crate) async fn compile_views_at_open(
        store: &Arc<dyn object_store::ObjectStore>,
        defs: &[RollupDef],
        tables: &BTreeMap<String, Arc<Table>>,
    ) -> (BTreeMap<String, Arc<RollupPlan>>, Vec<Arc<RollupPlan>>) {
        let table_defs: BTreeMap<String, TableDef> = tables
            .iter()
            .map(|(n, t)| (n.clone(), t.state.lock().def.clone()))
            .collect();
        let mut plans: BTreeMap<String, Arc<RollupPlan>> = BTreeMap::new();
        let mut rebuild: Vec<Arc<RollupPlan>> = Vec::new();
        for def in defs {
            let lookup = lookup_from(table_defs.clone(), plans.clone());
            let plan = match compile(def, lookup).await {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(view = %def.name, error = %e, "materialized view does not compile; it is not maintained");
                    continue;
                }
            };
            let Some(table) = tables.get(&plan.root_table) else {
                continue;
            };
            let parent_rebuilt = plan
                .parent
                .as_ref()
                .is_some_and(|p| rebuild.iter().any(|r| &r.def.name == p));
            let restored = if parent_rebuilt {
                None
            } else {
                restore_view(store, table, &plan).await
            };
            match restored {
                Some(v) => table.state.lock().views.push(v),
                None => rebuild.push(Arc::clone(&plan)),
            }
            plans.insert(def.name.clone(), plan);
        }
        (plans, rebuild)
    }
}

/// Paths of view snapshots a manifest names (kept by the orphan sweep).
pub(crate) fn snapshot_paths(m: &manifest::Manifest) -> impl Iterator<Item = String> + '_ {
    m.rollups.values().map(|r| r.path.clone())
}

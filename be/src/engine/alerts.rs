//! The engine's side of alert rules: create, drop, restore at start, sinks. Evaluation is
//! in [`crate::alerts`].

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_ingest::alert::sink::AlertSink;
use eddy_ingest::alert::view::ViewWatch;
use eddy_ingest::alert::RowRule;
use eddy_ingest::rollup::RollupPlan;
use eddy_proto::{
    alerts_table_def, AlertDef, AlertRuleInfo, BeService, Emit, Error, ErrorCode, Result,
    ALERTS_TABLE,
};

use super::Engine;
use crate::alerts::{read_all, AlertHub, HubStore, TableAlerts};
use crate::table::Table;

fn rule_missing(name: &str) -> Error {
    Error::new(
        ErrorCode::SourceNotFound,
        format!("alert rule \"{name}\" does not exist"),
    )
}

/// The table whose writes a rule on `source` watches, and the view plan if it is a view.
fn resolve(
    tables: &BTreeMap<String, Arc<Table>>,
    views: &BTreeMap<String, Arc<RollupPlan>>,
    source: &str,
) -> Result<(Arc<Table>, Option<Arc<RollupPlan>>)> {
    if source == ALERTS_TABLE {
        return Err(Error::new(
            ErrorCode::InvalidStatement,
            "alert rules cannot watch system.alerts itself",
        ));
    }
    if let Some(plan) = views.get(source) {
        let t = tables.get(&plan.root_table).ok_or_else(|| {
            Error::new(
                ErrorCode::TableNotFound,
                format!("table \"{}\" does not exist", plan.root_table),
            )
        })?;
        return Ok((Arc::clone(t), Some(Arc::clone(plan))));
    }
    match tables.get(source) {
        Some(t) => Ok((Arc::clone(t), None)),
        None => Err(Error::new(
            ErrorCode::TableNotFound,
            format!("relation \"{source}\" does not exist (an alert rule watches a table or a materialized view)"),
        )),
    }
}

/// Compiles `def` and adds it to the state of the table it watches. Nothing changes when
/// it does not compile.
pub(crate) fn attach(
    hub: &Arc<AlertHub>,
    tables: &BTreeMap<String, Arc<Table>>,
    views: &BTreeMap<String, Arc<RollupPlan>>,
    def: &AlertDef,
) -> Result<String> {
    let (table, plan) = resolve(tables, views, &def.source)?;
    let mut st = table.state.lock();
    match plan {
        Some(plan) => {
            // Compile on a fresh watch first: a bad rule leaves the running one alone.
            ViewWatch::new(Arc::clone(&plan))?.add_rule(def)?;
            let alerts = st
                .alerts
                .get_or_insert_with(|| TableAlerts::new(Arc::clone(hub)));
            match alerts.views.iter_mut().find(|w| w.view() == def.source) {
                Some(w) => w.add_rule(def)?,
                None => {
                    let mut w = ViewWatch::new(plan)?;
                    w.add_rule(def)?;
                    alerts.views.push(w);
                }
            }
        }
        None => {
            if def.emit == Emit::OnClose {
                return Err(Error::new(
                    ErrorCode::InvalidStatement,
                    format!(
                        "EMIT ON CLOSE needs buckets: \"{}\" is a table, whose rules fire per row; put the rule on a materialized view",
                        def.source
                    ),
                ));
            }
            let rule = RowRule::new(def, &st.def)?;
            st.alerts
                .get_or_insert_with(|| TableAlerts::new(Arc::clone(hub)))
                .rows
                .push(rule);
        }
    }
    Ok(st.def.name.clone())
}

/// Takes rule `name` out of `table`'s state.
fn detach(table: &Arc<Table>, name: &str) {
    let mut st = table.state.lock();
    let Some(a) = st.alerts.as_mut() else {
        return;
    };
    a.rows.retain(|r| r.name() != name);
    for w in &mut a.views {
        w.remove_rule(name);
    }
    a.views.retain(|w| !w.rules.is_empty());
    if a.rows.is_empty() && a.views.is_empty() {
        st.alerts = None;
    }
}

impl Engine {
    /// At start, before the WAL replay: remembers recorded alert ids and attaches every
    /// rule, so that replayed rows fire (and repeats are recognised).
    pub(crate) async fn open_alerts(
        defs: &[AlertDef],
        tables: &BTreeMap<String, Arc<Table>>,
        views: &BTreeMap<String, Arc<RollupPlan>>,
    ) -> Result<Arc<AlertHub>> {
        let hub = Arc::new(AlertHub::default());
        if let Some(t) = tables.get(ALERTS_TABLE) {
            hub.set_table(Arc::clone(t));
            for b in read_all(t).await? {
                hub.remember(&b)?;
            }
        }
        for def in defs {
            match attach(&hub, tables, views, def) {
                Ok(root) => {
                    hub.defs
                        .write()
                        .insert(def.name.clone(), (def.clone(), root));
                }
                Err(e) => {
                    tracing::error!(rule = %def.name, error = %e, "alert rule could not be restored");
                    hub.errors
                        .lock()
                        .insert(def.name.clone(), e.message.clone());
                    hub.defs
                        .write()
                        .insert(def.name.clone(), (def.clone(), String::new()));
                }
            }
        }
        Ok(hub)
    }

    pub(crate) fn start_sink(&self, def: &AlertDef) -> Result<()> {
        if def.sink.is_none() {
            return Ok(());
        }
        let store = Arc::new(HubStore {
            engine: std::sync::Weak::clone(&self.me),
            rt: tokio::runtime::Handle::current(),
        });
        let sink = AlertSink::start(def.clone(), store, self.config.alert_sink_queue_max)?;
        self.alerts
            .sinks
            .write()
            .insert(def.name.clone(), Arc::new(sink));
        Ok(())
    }

    pub(crate) async fn create_rule(&self, def: AlertDef, if_not_exists: bool) -> Result<()> {
        if self.alerts.defs.read().contains_key(&def.name) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                ErrorCode::SourceAlreadyExists,
                format!("alert rule \"{}\" already exists", def.name),
            ));
        }
        if let Some(s) = &def.sink {
            if s.brokers.trim().is_empty() || s.topic.trim().is_empty() {
                return Err(Error::new(
                    ErrorCode::InvalidSourceOption,
                    "SINK KAFKA needs brokers = '...' and topic = '...'",
                ));
            }
        }
        if self.alerts.table().is_none() {
            self.create_table(alerts_table_def(), true).await?;
            self.alerts.set_table(self.get(ALERTS_TABLE)?);
        }
        let mut cat = self.catalog.lock().await;
        if cat.alerts.iter().any(|a| a.name == def.name) {
            return Err(Error::new(
                ErrorCode::SourceAlreadyExists,
                format!("alert rule \"{}\" already exists", def.name),
            ));
        }
        let tables = self.tables.read().clone();
        let views = self.views.read().clone();
        let root = attach(&self.alerts, &tables, &views, &def)?;
        let mut next = cat.clone();
        next.alerts.push(def.clone());
        if let Err(e) = self.store_catalog(&mut cat, next).await {
            if let Some(t) = tables.get(&root) {
                detach(t, &def.name);
            }
            return Err(e);
        }
        self.alerts
            .defs
            .write()
            .insert(def.name.clone(), (def.clone(), root));
        self.start_sink(&def)?;
        tracing::info!(rule = %def.name, source = %def.source, "alert rule created");
        Ok(())
    }

    pub(crate) async fn drop_rule(&self, name: &str, if_exists: bool) -> Result<()> {
        let mut cat = self.catalog.lock().await;
        if !cat.alerts.iter().any(|a| a.name == name) {
            return if if_exists {
                Ok(())
            } else {
                Err(rule_missing(name))
            };
        }
        let mut next = cat.clone();
        next.alerts.retain(|a| a.name != name);
        self.store_catalog(&mut cat, next).await?;
        let root = self.alerts.defs.write().remove(name).map(|(_, r)| r);
        if let Some(t) = root.and_then(|r| self.tables.read().get(&r).cloned()) {
            detach(&t, name);
        }
        self.alerts.errors.lock().remove(name);
        let sink = self.alerts.sinks.write().remove(name);
        if let Some(s) = sink {
            // Stopping joins the sink's thread.
            let _ = tokio::task::spawn_blocking(move || drop(s)).await;
        }
        Ok(())
    }

    /// The first rule watching `relation` (a table, or a view), if any.
    pub(crate) fn rule_on(&self, relation: &str) -> Option<String> {
        self.alerts
            .defs
            .read()
            .values()
            .find(|(d, root)| d.source == relation || root == relation)
            .map(|(d, _)| d.name.clone())
    }

    pub(crate) fn rules_info(&self) -> Vec<AlertRuleInfo> {
        let fired = self.alerts.fired.lock().clone();
        let errors = self.alerts.errors.lock().clone();
        let sinks = self.alerts.sinks.read().clone();
        self.alerts
            .defs
            .read()
            .values()
            .map(|(def, root)| {
                let sink = sinks.get(&def.name);
                let sink_error = sink.and_then(|s| s.shared.last_error.lock().clone());
                AlertRuleInfo {
                    def: Some(def.clone()),
                    root_table: root.clone(),
                    fired: fired.get(&def.name).copied().unwrap_or(0),
                    delivered: sink.map_or(0, |s| {
                        s.shared
                            .delivered
                            .load(std::sync::atomic::Ordering::Relaxed)
                    }),
                    queued: sink.map_or(0, |s| s.shared.queued()),
                    last_error: errors.get(&def.name).cloned().or(sink_error),
                }
            })
            .collect()
    }
}

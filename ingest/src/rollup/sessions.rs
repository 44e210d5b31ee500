//! Session windows: per key, the events closer than `gap` to each other form one session.
//!
//! Algorithm: each key keeps its sessions in a `BTreeMap` by start. An event at `t` joins
//! every session with `start - gap <= t <= end + gap` (at most one on each side, since
//! sessions of a key are more than `gap` apart); when it joins two, they merge, which is
//! how a late event bridges two sessions. A session is a group of the aggregate states; a
//! merged-away group is linked to the survivor (union-find) and its partial states are
//! merged into the survivor's by [`Sessions::compaction`] the next time states are read.
//! The result does not depend on arrival order: sessions are the connected components of
//! "closer than the gap", exactly what `SESSION()` computes over the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, TimestampMicrosecondArray};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows, SortField};
use eddy_proto::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Copy)]
struct Session {
    key: u32,
    start: i64,
    end: i64,
    alive: bool,
}

pub(crate) struct Sessions {
    gap: i64,
    converter: RowConverter,
    key_ids: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    /// The same ids by value for 64-bit integer keys (user ids): no row encoding to hash.
    int_ids: HashMap<i64, u32, ahash::RandomState>,
    keys: Vec<Box<[u8]>>,
    by_key: Vec<BTreeMap<i64, u32>>,
    /// Per key, its session with the latest start (`NONE` before the first): the one an
    /// in-order event joins or follows, found without searching `by_key`.
    latest: Vec<u32>,
    groups: Vec<Session>,
    parent: Vec<u32>,
    merged_away: usize,
    /// Bytes of `keys`, kept as keys are added (`size` is called per batch).
    key_bytes: usize,
}

const NONE: u32 = u32::MAX;

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("session window: {e}"))
}

/// How to renumber groups: `map[old] = new`, and the new count.
pub(crate) struct Compaction {
    pub map: Vec<usize>,
    pub groups: usize,
}

impl Sessions {
    pub(crate) fn new(key_type: &DataType, gap_micros: i64) -> Result<Self> {
        Ok(Self {
            gap: gap_micros,
            converter: RowConverter::new(vec![SortField::new(key_type.clone())])
                .map_err(internal)?,
            key_ids: HashMap::default(),
            int_ids: HashMap::default(),
            keys: Vec::new(),
            by_key: Vec::new(),
            latest: Vec::new(),
            groups: Vec::new(),
            parent: Vec::new(),
            merged_away: 0,
            key_bytes: 0,
        })
    }

    /// Groups ever created (live and merged away): the accumulators' group count.
    pub(crate) fn total_groups(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn live_groups(&self) -> usize {
        self.groups.len() - self.merged_away
    }

    fn find(&mut self, mut g: u32) -> u32 {
        while self.parent[g as usize] != g {
            let p = self.parent[g as usize];
            self.parent[g as usize] = self.parent[p as usize];
            g = p;
        }
        g
    }

    fn key_id(&mut self, rows: &Rows, i: usize) -> u32 {
        let row = rows.row(i);
        if let Some(id) = self.key_ids.get(row.as_ref()) {
            return *id;
        }
        let id = self.keys.len() as u32;
        let bytes: Box<[u8]> = row.as_ref().into();
        self.key_bytes += 2 * bytes.len() + 64;
        self.key_ids.insert(bytes.clone(), id);
        self.keys.push(bytes);
        self.by_key.push(BTreeMap::new());
        self.latest.push(NONE);
        id
    }

    fn new_group(&mut self, key: u32, t: i64) -> u32 {
        let g = self.groups.len() as u32;
        self.groups.push(Session {
            key,
            start: t,
            end: t,
            alive: true,
        });
        self.parent.push(g);
        self.by_key[key as usize].insert(t, g);
        let l = &mut self.latest[key as usize];
        if *l == NONE || t > self.groups[*l as usize].start {
            *l = g;
        }
        g
    }

    /// Assigns each row (key, event time in µs) to its session, creating and merging
    /// sessions as needed. Rows with a NULL key or time must have been filtered out.
    pub(crate) fn assign(
        &mut self,
        key: &ArrayRef,
        times: &[i64],
        groups: &mut Vec<usize>,
    ) -> Result<()> {
        let ints = key.as_primitive_opt::<arrow::datatypes::Int64Type>();
        // Integer keys are looked up by value: rows are encoded only when a new key comes.
        let mut rows = None;
        if ints.is_none() {
            rows = Some(
                self.converter
                    .convert_columns(&[Arc::clone(key)])
                    .map_err(internal)?,
            );
        }
        groups.clear();
        let gap = self.gap;
        for (i, &t) in times.iter().enumerate() {
            let k = match ints {
                Some(a) => {
                    let v = a.value(i);
                    match self.int_ids.get(&v) {
                        Some(k) => *k,
                        None => {
                            if rows.is_none() {
                                rows = Some(
                                    self.converter
                                        .convert_columns(&[Arc::clone(key)])
                                        .map_err(internal)?,
                                );
                            }
                            let k = self.key_id(rows.as_ref().expect("just set"), i);
                            self.int_ids.insert(v, k);
                            self.key_bytes += 32;
                            k
                        }
                    }
                }
                None => self.key_id(rows.as_ref().expect("set for non-integer keys"), i),
            };
            // In order (the common case): the event joins the key's latest session, or
            // starts a new one after it. No other session can be in reach: sessions of a
            // key are more than `gap` apart and none starts after the latest.
            let l = self.latest[k as usize];
            if l != NONE {
                let s = &mut self.groups[l as usize];
                if t >= s.start && t <= s.end.saturating_add(gap) {
                    s.end = s.end.max(t);
                    groups.push(l as usize);
                    continue;
                }
                if t > s.end.saturating_add(gap) {
                    let g = self.new_group(k, t);
                    groups.push(g as usize);
                    continue;
                }
            }
            // At most two sessions are within reach: sessions of a key are more than `gap`
            // apart, so one can end before `t` and one start after it.
            let mut found = [(0i64, 0u32); 2];
            let mut n = 0;
            for (s, g) in self.by_key[k as usize]
                .range(..=t.saturating_add(gap))
                .rev()
            {
                if self.groups[*g as usize].end < t.saturating_sub(gap) || n == 2 {
                    break;
                }
                found[n] = (*s, *g);
                n += 1;
            }
            let g = match &found[..n] {
                [] => self.new_group(k, t),
                [(start, g)] => {
                    let (start, g) = (*start, *g);
                    let s = &mut self.groups[g as usize];
                    s.end = s.end.max(t);
                    if t < start {
                        s.start = t;
                        let map = &mut self.by_key[k as usize];
                        map.remove(&start);
                        map.insert(t, g);
                    }
                    g
                }
                many => {
                    let keep = many.iter().map(|(_, g)| *g).min().expect("non-empty");
                    let mut start = t;
                    let mut end = t;
                    for (s, g) in many {
                        start = start.min(self.groups[*g as usize].start);
                        end = end.max(self.groups[*g as usize].end);
                        self.by_key[k as usize].remove(s);
                        if *g != keep {
                            self.groups[*g as usize].alive = false;
                            self.parent[*g as usize] = keep;
                            self.merged_away += 1;
                        }
                    }
                    let s = &mut self.groups[keep as usize];
                    s.start = start;
                    s.end = end;
                    self.by_key[k as usize].insert(start, keep);
                    keep
                }
            };
            self.latest[k as usize] = self.by_key[k as usize]
                .last_key_value()
                .map_or(NONE, |(_, g)| *g);
            groups.push(g as usize);
        }
        // A later row of this batch may have merged the session an earlier row joined.
        if self.merged_away > 0 {
            for g in groups.iter_mut() {
                *g = self.find(*g as u32) as usize;
            }
        }
        Ok(())
    }

    /// Renumbers live sessions densely (dropping merged-away ones) and says where each old
    /// group's partial state goes.
    pub(crate) fn compaction(&mut self) -> Compaction {
        let n = self.groups.len();
        let mut new_id = vec![usize::MAX; n];
        let mut next = 0;
        for g in 0..n {
            if self.groups[g].alive {
                new_id[g] = next;
                next += 1;
            }
        }
        let map = (0..n)
            .map(|g| new_id[self.find(g as u32) as usize])
            .collect::<Vec<_>>();
        Compaction { map, groups: next }
    }

    /// Applies a compaction computed by [`Self::compaction`].
    pub(crate) fn compact(&mut self, c: &Compaction) {
        let live: Vec<Session> = self.groups.iter().copied().filter(|s| s.alive).collect();
        self.groups = live;
        self.parent = (0..self.groups.len() as u32).collect();
        self.merged_away = 0;
        for m in self.by_key.iter_mut() {
            for g in m.values_mut() {
                *g = c.map[*g as usize] as u32;
            }
        }
        for l in self.latest.iter_mut().filter(|l| **l != NONE) {
            *l = c.map[*l as usize] as u32;
        }
    }

    /// Keys, starts and ends of the live sessions in group order (after a compaction).
    pub(crate) fn columns(&self, time_type: &DataType) -> Result<(ArrayRef, ArrayRef, ArrayRef)> {
        let live: Vec<&Session> = self.groups.iter().filter(|s| s.alive).collect();
        let parser = self.converter.parser();
        let key_rows = live
            .iter()
            .map(|s| parser.parse(&self.keys[s.key as usize]));
        let keys = self
            .converter
            .convert_rows(key_rows)
            .map_err(internal)?
            .remove(0);
        let ts = |f: fn(&Session) -> i64| -> Result<ArrayRef> {
            let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(
                live.iter().map(|s| f(s)).collect::<Vec<_>>(),
            ));
            arrow::compute::cast(&a, time_type).map_err(internal)
        };
        Ok((keys, ts(|s| s.start)?, ts(|s| s.end)?))
    }

    /// Restores sessions from a snapshot's key/start/end columns; group `i` is row `i`.
    pub(crate) fn restore(&mut self, key: &ArrayRef, starts: &[i64], ends: &[i64]) -> Result<()> {
        let rows = self
            .converter
            .convert_columns(&[Arc::clone(key)])
            .map_err(internal)?;
        for i in 0..starts.len() {
            let k = self.key_id(&rows, i);
            let g = self.new_group(k, starts[i]);
            self.groups[g as usize].end = ends[i];
        }
        Ok(())
    }

    /// Sessions still open to late rows: ending after `horizon` (µs).
    pub(crate) fn open_after(&self, horizon: i64) -> u64 {
        self.groups
            .iter()
            .filter(|s| s.alive && s.end > horizon)
            .count() as u64
    }

    pub(crate) fn size(&self) -> usize {
        self.key_bytes
            + self.by_key.len() * 52
            + self.groups.len() * (std::mem::size_of::<Session>() + 4 + 40)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    /// Sessions over shuffled arrival in random batch sizes (late events that extend,
    /// precede and bridge sessions included) equal sessions over the sorted events.
    #[test]
    fn sessions_do_not_depend_on_arrival_order() {
        const GAP: i64 = 100;
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut events: Vec<(i64, i64)> = (0..2000)
                .map(|_| (rng.gen_range(0..7), rng.gen_range(0..20_000)))
                .collect();
            // Mostly in order, as streams are, with a shuffled tail of late events.
            events.sort_by_key(|e| e.1);
            let cut = events.len() * 3 / 4;
            events[cut..].shuffle(&mut rng);
            for i in 0..cut {
                if rng.gen_range(0..10) == 0 {
                    let j = rng.gen_range(0..events.len());
                    events.swap(i, j);
                }
            }
            let mut s = Sessions::new(&DataType::Int64, GAP).unwrap();
            let mut groups = Vec::new();
            let mut at = 0;
            while at < events.len() {
                let n = rng.gen_range(1..200).min(events.len() - at);
                let part = &events[at..at + n];
                let key: ArrayRef =
                    Arc::new(Int64Array::from_iter_values(part.iter().map(|e| e.0)));
                let times: Vec<i64> = part.iter().map(|e| e.1).collect();
                s.assign(&key, &times, &mut groups).unwrap();
                for (row, g) in groups.iter().enumerate() {
                    let sess = s.groups[*g];
                    assert!(sess.alive && sess.start <= times[row] && times[row] <= sess.end);
                }
                at += n;
            }
            let mut got: Vec<(i64, i64, i64)> = s
                .groups
                .iter()
                .filter(|g| g.alive)
                .map(|g| {
                    let k = s.int_ids.iter().find(|(_, id)| **id == g.key).unwrap().0;
                    (*k, g.start, g.end)
                })
                .collect();
            got.sort();
            let mut sorted = events.clone();
            sorted.sort();
            let mut want: Vec<(i64, i64, i64)> = Vec::new();
            for (k, t) in sorted {
                match want.last_mut() {
                    Some(w) if w.0 == k && t - w.2 <= GAP => w.2 = t,
                    _ => want.push((k, t, t)),
                }
            }
            assert_eq!(got, want, "seed {seed}");
        }
    }
}

//! The permutation that sorts a segment's rows by time.
//!
//! Rows arrive nearly in time order: ticks and events are produced in order and a few
//! arrive late. The rows that never fall behind the running maximum are already sorted,
//! so only the late ones need sorting, and one merge puts them in place: two passes over
//! the rows instead of a comparison sort of all of them (which a general sort still does
//! when late rows are spread evenly, as they are, since each breaks a run).

/// Beyond this share of late rows (1/8) a plain sort of everything is cheaper.
const LATE_SHARE_MAX: usize = 8;

/// Positions `0..keys.len()` ordered by `keys`, equal keys keeping their positions' order
/// (a stable sort).
pub(crate) fn stable_order(keys: &[i64]) -> Vec<u32> {
    let n = keys.len();
    let mut in_order: Vec<u32> = Vec::with_capacity(n);
    let mut late: Vec<(i64, u32)> = Vec::new();
    let mut max = i64::MIN;
    for (j, &k) in keys.iter().enumerate() {
        if k >= max {
            max = k;
            in_order.push(j as u32);
        } else {
            late.push((k, j as u32));
            if late.len() > n / LATE_SHARE_MAX {
                return sort_all(keys);
            }
        }
    }
    if late.is_empty() {
        return in_order;
    }
    // (key, position) pairs are distinct, so an unstable sort of them is a stable sort by key.
    late.sort_unstable();
    let mut out = Vec::with_capacity(n);
    let mut rest = late.iter().peekable();
    for &j in &in_order {
        let here = (keys[j as usize], j);
        while let Some(&&l) = rest.peek() {
            if l >= here {
                break;
            }
            out.push(l.1);
            rest.next();
        }
        out.push(j);
    }
    out.extend(rest.map(|l| l.1));
    out
}

fn sort_all(keys: &[i64]) -> Vec<u32> {
    let mut keyed: Vec<(i64, u32)> = keys.iter().zip(0u32..).map(|(k, j)| (*k, j)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(keys: &[i64]) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..keys.len() as u32).collect();
        idx.sort_by_key(|j| keys[*j as usize]);
        idx
    }

    /// A small deterministic generator (xorshift), so failures reproduce.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.max(1);
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn matches_a_stable_sort_for_every_shape() {
        let mut next = rng(7);
        let mut cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![5],
            vec![3, 3, 3],
            vec![1, 2, 3, 4],
            vec![4, 3, 2, 1],
            vec![i64::MIN, 0, i64::MIN, i64::MAX, i64::MIN],
        ];
        for late_per_mille in [0, 1, 10, 100, 124, 126, 500, 1000] {
            let mut t = 0i64;
            let keys: Vec<i64> = (0..5000)
                .map(|_| {
                    t += (next() % 3) as i64; // ties on purpose
                    if next() % 1000 < late_per_mille {
                        t - (next() % 50) as i64
                    } else {
                        t
                    }
                })
                .collect();
            cases.push(keys);
        }
        for keys in cases {
            assert_eq!(stable_order(&keys), expected(&keys), "keys {keys:?}");
        }
    }
}

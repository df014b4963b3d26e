//! Writing a verdict matrix (peer groups × cell groups) with the fewest entries the
//! 4-step wildcard lookup allows (`enforcer_common::VerdictKey`: exact, then
//! `(class, ANY_CELL)`, `(ANY_PEER, cell)`, `(ANY_PEER, ANY_CELL)`).

use enforcer_common::{ANY_CELL, ANY_PEER, Verdict};

use super::cells::Cell;

/// Writes a (peer group × cell group) verdict matrix with the fewest entries the
/// 4-step lookup allows: the biggest peer group's most common verdict is the default,
/// its other verdicts become `(ANY_PEER, cell)` entries, and every other group gets
/// either exact entries where it differs from that or its own `(class, ANY_CELL)`.
pub(super) fn emit_compressed(
    peer_groups: &[Vec<u32>],
    cell_groups: &[Vec<Cell>],
    matrix: &[Vec<Verdict>],
    mut emit: impl FnMut(u32, u32, Verdict),
) {
    let Some(g0) =
        (0..peer_groups.len()).max_by_key(|&g| (peer_groups[g].len(), std::cmp::Reverse(g)))
    else {
        return;
    };
    let weights: Vec<usize> = cell_groups.iter().map(Vec::len).collect();
    let row0 = &matrix[g0];
    let default = most_common(row0, &weights);
    emit(ANY_PEER, ANY_CELL, default);
    for (c, v) in row0.iter().enumerate() {
        if *v != default {
            for cell in &cell_groups[c] {
                emit(ANY_PEER, cell.id, *v);
            }
        }
    }
    for (g, classes) in peer_groups.iter().enumerate() {
        if g == g0 {
            continue;
        }
        let row = &matrix[g];
        let cost_exact: usize = (0..row.len())
            .filter(|&c| row[c] != row0[c])
            .map(|c| weights[c])
            .sum();
        if cost_exact == 0 {
            continue;
        }
        let own = most_common(row, &weights);
        let cost_own: usize = 1
            + (0..row.len())
                .filter(|&c| row[c] != own)
                .map(|c| weights[c])
                .sum::<usize>();
        for &class in classes {
            if cost_exact <= cost_own {
                for (c, v) in row.iter().enumerate() {
                    if *v != row0[c] {
                        for cell in &cell_groups[c] {
                            emit(class, cell.id, *v);
                        }
                    }
                }
            } else {
                emit(class, ANY_CELL, own);
                for (c, v) in row.iter().enumerate() {
                    if *v != own {
                        for cell in &cell_groups[c] {
                            emit(class, cell.id, *v);
                        }
                    }
                }
            }
        }
    }
}

fn most_common(row: &[Verdict], weights: &[usize]) -> Verdict {
    let mut counts: Vec<(Verdict, usize)> = Vec::new();
    for (v, w) in row.iter().zip(weights) {
        match counts.iter_mut().find(|(x, _)| x == v) {
            Some((_, n)) => *n += w,
            None => counts.push((*v, *w)),
        }
    }
    counts
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i)))
        .map(|(_, (v, _))| *v)
        .unwrap_or_default()
}

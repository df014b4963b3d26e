//! Tables for people, all of one look: comfy-table without borders, columns
//! left-aligned and two spaces apart, no trailing blanks.

use std::collections::{BTreeMap, BTreeSet};

use comfy_table::{Cell, CellAlignment, Table, presets};

use enforcer::connectivity::{ProbeResult, Protocol};

/// A table with `header`; `right` lists the columns aligned right (numbers).
pub fn new(header: &[&str], right: &[usize]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.iter().map(Cell::new));
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The table's text, one line per row, each ending in a newline.
pub fn text(table: &Table) -> String {
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}

/// The connectivity matrix of `lab probe` and `matrix`. Rows: sources; columns:
/// `target:port/protocol`; cells `ok`, `--`, or empty where nothing was probed; then
/// `N/M connected`.
pub fn probe_matrix(results: &[ProbeResult]) -> String {
    let mut rows: Vec<&str> = Vec::new();
    let mut keys: BTreeSet<(&str, u16, Protocol)> = BTreeSet::new();
    let mut cells: BTreeMap<(&str, &str, u16, Protocol), bool> = BTreeMap::new();
    for r in results {
        if !rows.contains(&r.from.as_str()) {
            rows.push(&r.from);
        }
        keys.insert((&r.to, r.port, r.protocol));
        cells.insert((&r.from, &r.to, r.port, r.protocol), r.connected);
    }
    let columns: Vec<String> = keys
        .iter()
        .map(|(to, port, p)| format!("{to}:{port}/{}", p.as_str()))
        .collect();
    let mut header = vec!["FROM \\ TO"];
    header.extend(columns.iter().map(String::as_str));
    let mut table = new(&header, &[]);
    for row in &rows {
        let mut line = vec![(*row).to_owned()];
        line.extend(keys.iter().map(|(to, port, p)| {
            match cells.get(&(*row, *to, *port, *p)) {
                Some(true) => "ok",
                Some(false) => "--",
                None => "",
            }
            .to_owned()
        }));
        table.add_row(line);
    }
    let connected = results.iter().filter(|r| r.connected).count();
    format!("{}{connected}/{} connected\n", text(&table), results.len())
}

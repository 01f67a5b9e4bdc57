//! Consul's `columnize.SimpleFormat` tables, shared by the commands that
//! print them (`catalog nodes`, `members`, `operator raft list-peers`).

/// The column separator.
const GLUE: &str = "  ";

/// Every column but the last padded to its widest cell, joined by two
/// spaces, one row per line (trailing spaces trimmed).
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = width.saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(GLUE);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

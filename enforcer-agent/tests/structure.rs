//! The structure rules of the code base, checked on its sources (std only, a small
//! lexer instead of a Rust parser):
//!
//! 1. the file-level import graph of `enforcer-agent/src` has no cycle between files,
//!    nor between folders (top-level modules);
//! 2. every import between folders goes to a lower layer of [`RANKS`] (a module
//!    missing from the table is itself a failure, so a new module gets ranked), and
//!    `lab` is a leaf: only `lab/` and `cli/lab.rs` import it;
//! 3. no non-test source file of the product crates is over [`MAX_FILE_LINES`] lines;
//! 4. no function in `compile/` and `policy/` is over [`MAX_FN_LINES`] lines.
//!
//! Each test fails with the whole list of what breaks its rule.
//!
//! What counts as an import: `use` paths and in-code paths starting with `crate::`,
//! `super::`, `self::` (or `enforcer::` in the binary), and `use` of a child module by
//! its bare name. A `mod` declaration is not an import: it only places files in the
//! module tree (a parent declaring a child that uses the parent's items is the usual
//! façade, not a cycle). Test code (`tests.rs`, files under a `tests/` folder, modules
//! declared under `#[cfg(test)]`) is left out of the graph and of the size limits.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Layers of `enforcer-agent/src`, low to high (`docs/architecture.md`): a folder
/// imports only folders of a lower rank.
const RANKS: &[(&str, u32)] = &[
    ("selector", 0),
    ("model", 1),
    ("policy", 2),
    ("cluster", 3),
    ("eval", 3),
    ("compile", 4),
    ("dataplane", 5),
    ("datastore", 5),
    ("agent", 6),
    // Tools: what `check`, `matrix` and the lab build on ...
    ("connectivity", 7),
    ("explain", 7),
    // Reads the agent's flow log (`enforcer flows`).
    ("flows", 7),
    ("inspect", 7),
    ("offline", 7),
    ("testkit", 7),
    // ... and the tools themselves.
    ("check", 8),
    ("matrix", 8),
    // The agent's health and metrics endpoint: reads the agent's status and, through
    // `inspect`, the pinned maps.
    ("health", 8),
    ("lab", 9),
    // The binary: `main.rs` and its `cli/` folder.
    ("main", 10),
    ("cli", 10),
];

/// The folder nothing imports but itself and these files.
const LEAF: &str = "lab";
const LEAF_IMPORTERS: &[&str] = &["cli/lab.rs"];

const MAX_FILE_LINES: usize = 700;
const MAX_FN_LINES: usize = 150;
/// Product source folders, relative to the workspace root.
const PRODUCT_SOURCES: &[&str] = &[
    "enforcer-agent/src",
    "enforcer-common/src",
    "enforcer-ebpf/src",
    "xtask/src",
];
/// Folders of `enforcer-agent/src` whose functions are size-limited.
const FN_LIMITED: &[&str] = &["compile", "policy"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || panic!("enforcer-agent has no parent folder"),
        Path::to_path_buf,
    )
}

fn agent_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn is_test_path(rel_path: &str) -> bool {
    rel_path.ends_with("/tests.rs")
        || rel_path == "tests.rs"
        || rel_path.starts_with("tests/")
        || rel_path.contains("/tests/")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------
// Lexing: code with comments and literals blanked (newlines kept, so byte offsets
// and line numbers stay those of the file).
// ---------------------------------------------------------------------------------

fn blank(out: &mut [u8], from: usize, to: usize) {
    for b in &mut out[from..to] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

/// `src` with comments, string, byte-string and char literal contents replaced by
/// spaces.
fn strip(src: &str) -> String {
    let s = src.as_bytes();
    let mut out = s.to_vec();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with(b"//") {
            let end = s[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(s.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < s.len() {
                if s[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if s[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(s, i) {
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == b'"' && (i == 0 || !is_ident(s[i - 1]) || s[i - 1] == b'b') {
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, (j + 1).min(s.len()));
            i = j + 1;
        } else if s[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label.
            if s.get(i + 1) == Some(&b'\\') {
                let mut j = i + 2;
                while j < s.len() && s[j] != b'\'' {
                    j += 1;
                }
                blank(&mut out, i, (j + 1).min(s.len()));
                i = j + 1;
            } else if let Some(len) = std::str::from_utf8(&s[i + 1..(i + 6).min(s.len())])
                .ok()
                .or_else(|| std::str::from_utf8(&s[i + 1..(i + 5).min(s.len())]).ok())
                .and_then(|t| t.chars().next())
                .map(char::len_utf8)
                .filter(|&len| s.get(i + 1 + len) == Some(&b'\''))
            {
                blank(&mut out, i, i + len + 2);
                i += len + 2;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The end of a raw (byte) string starting at `i` (`r"…"`, `r#"…"#`, `br"…"`).
fn raw_string_end(s: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident(s[i - 1]) {
        return None;
    }
    let mut j = i;
    if s.get(j) == Some(&b'b') {
        j += 1;
    }
    if s.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if s.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    while j < s.len() {
        if s[j..].starts_with(&close) {
            return Some(j + close.len());
        }
        j += 1;
    }
    Some(s.len())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The offset just past the `}` matching the `{` at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Identifier-bounded occurrences of `word` in `code`.
fn find_word(code: &str, word: &str) -> Vec<usize> {
    let b = code.as_bytes();
    code.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            (i == 0 || !is_ident(b[i - 1])) && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
        })
        .collect()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(b: &[u8], i: usize) -> Option<(String, usize)> {
    let end = b[i..]
        .iter()
        .position(|&c| !is_ident(c))
        .map_or(b.len(), |p| i + p);
    (end > i).then(|| (String::from_utf8_lossy(&b[i..end]).into_owned(), end))
}

/// What follows `#[cfg(test)]` at `attr_end`, if it is a module: its name, and where
/// its inline body ends (`None` for `mod name;`).
fn cfg_test_module(code: &str, attr_end: usize) -> Option<(String, usize, Option<usize>)> {
    let b = code.as_bytes();
    let mut i = skip_ws(b, attr_end);
    // Further attributes, `pub`, `pub(crate)`.
    loop {
        if b.get(i) == Some(&b'#') {
            i = b[i..]
                .iter()
                .position(|&c| c == b']')
                .map_or(b.len(), |p| i + p + 1);
            i = skip_ws(b, i);
        } else if code[i..].starts_with("pub") {
            i = skip_ws(b, i + 3);
            if b.get(i) == Some(&b'(') {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b')')
                    .map_or(b.len(), |p| i + p + 1);
            }
            i = skip_ws(b, i);
        } else {
            break;
        }
    }
    if !code[i..].starts_with("mod") || b.get(i + 3).is_none_or(|&c| is_ident(c)) {
        return None;
    }
    let (name, end) = ident_at(b, skip_ws(b, i + 3))?;
    let next = skip_ws(b, end);
    match b.get(next) {
        Some(b'{') => Some((name, i, Some(matching_brace(b, next)))),
        _ => Some((name, i, None)),
    }
}

/// A source file, lexed: code without comments and literals, without its inline
/// `#[cfg(test)]` modules; the names of modules it declares, test ones apart.
struct Lexed {
    code: String,
    modules: Vec<String>,
    test_modules: BTreeSet<String>,
}

fn lex(src: &str) -> Lexed {
    let mut code = strip(src);
    let mut test_modules = BTreeSet::new();
    for attr in find_word(&code.clone(), "cfg") {
        let after = &code[attr..];
        let Some(close) = after.find(')') else {
            continue;
        };
        let inner: String = after[3..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if inner != "(test" || !code[..attr].trim_end().ends_with("#[") {
            continue;
        }
        let attr_end = attr + close + 2;
        if let Some((name, start, body_end)) = cfg_test_module(&code, attr_end) {
            test_modules.insert(name);
            if let Some(end) = body_end {
                let mut bytes = code.into_bytes();
                blank(&mut bytes, start, end);
                code = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    let b = code.as_bytes();
    let mut modules = Vec::new();
    for at in find_word(&code, "mod") {
        let Some((name, end)) = ident_at(b, skip_ws(b, at + 3)) else {
            continue;
        };
        if b.get(skip_ws(b, end)) == Some(&b';') {
            modules.push(name);
        }
    }
    Lexed {
        code,
        modules,
        test_modules,
    }
}

// ---------------------------------------------------------------------------------
// The module tree and the import graph of enforcer-agent/src.
// ---------------------------------------------------------------------------------

/// One crate's module tree: module path → file (relative to `src`).
struct Crate {
    /// `enforcer` (the library) or `main` (the binary).
    name: &'static str,
    modules: BTreeMap<Vec<String>, String>,
}

struct SourceFile {
    lexed: Lexed,
    /// Index into the crates.
    krate: usize,
    module: Vec<String>,
}

struct Graph {
    files: BTreeMap<String, SourceFile>,
    crates: Vec<Crate>,
    /// (from, to) → line of the first import in `from`.
    edges: BTreeMap<(String, String), usize>,
}

fn child_file(src: &Path, parent_file: &str, name: &str) -> Option<String> {
    let parent = Path::new(parent_file);
    let dir = match parent.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs" | "lib.rs" | "main.rs") => parent.parent().map(Path::to_path_buf),
        _ => Some(parent.with_extension("")),
    }
    .unwrap_or_default();
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| src.join(p).is_file())
    .map(|p| p.to_string_lossy().replace('\\', "/"))
}

fn build_graph() -> Graph {
    let src = agent_src();
    let mut graph = Graph {
        files: BTreeMap::new(),
        crates: Vec::new(),
        edges: BTreeMap::new(),
    };
    for (name, root) in [("enforcer", "lib.rs"), ("main", "main.rs")] {
        let krate = graph.crates.len();
        graph.crates.push(Crate {
            name,
            modules: BTreeMap::new(),
        });
        let mut queue = vec![(Vec::<String>::new(), root.to_owned())];
        while let Some((module, file)) = queue.pop() {
            let lexed = lex(&read(&src.join(&file)));
            for child in &lexed.modules {
                if lexed.test_modules.contains(child) {
                    continue;
                }
                let Some(child_path) = child_file(&src, &file, child) else {
                    continue;
                };
                if is_test_path(&child_path) {
                    continue;
                }
                let mut child_module = module.clone();
                child_module.push(child.clone());
                queue.push((child_module, child_path));
            }
            graph.crates[krate]
                .modules
                .insert(module.clone(), file.clone());
            graph.files.insert(
                file,
                SourceFile {
                    lexed,
                    krate,
                    module,
                },
            );
        }
    }
    let names: Vec<String> = graph.files.keys().cloned().collect();
    for name in names {
        for (target, line) in imports(&graph, &name) {
            if target != name {
                graph.edges.entry((name.clone(), target)).or_insert(line);
            }
        }
    }
    graph
}

/// The file holding the longest module prefix of `path` (absolute in crate `krate`).
fn resolve(graph: &Graph, krate: usize, path: &[String]) -> Option<String> {
    let modules = &graph.crates[krate].modules;
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]))
        .cloned()
}

/// A module path and the offset it was read at.
type Located = (Vec<String>, usize);

/// Every `use` tree in `code` flattened to paths, with the offset of its `use`; and
/// the spans of the `use` statements.
fn use_paths(code: &str) -> (Vec<Located>, Vec<(usize, usize)>) {
    let b = code.as_bytes();
    let mut paths = Vec::new();
    let mut spans = Vec::new();
    for at in find_word(code, "use") {
        // A statement starts after `;`, a brace, an attribute, `pub` or `pub(...)`;
        // `use` elsewhere (a field, a path segment) is no statement.
        let before = code[..at].trim_end();
        let starts_statement = before.is_empty()
            || before.ends_with([';', '{', '}', ']', ')'])
            || before.ends_with("pub")
                && !before[..before.len() - 3].ends_with(|c: char| is_ident(c as u8));
        let Some(semi) = code[at..].find(';').map(|p| at + p) else {
            continue;
        };
        if !starts_statement || b.get(at + 3).is_none_or(|c| !c.is_ascii_whitespace()) {
            continue;
        }
        let mut out = Vec::new();
        expand_tree(&code[at + 3..semi], &mut Vec::new(), &mut out);
        for p in out {
            paths.push((p, at));
        }
        spans.push((at, semi));
    }
    (paths, spans)
}

fn segments(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
        .map(str::to_owned)
}

/// `a::{b, c::{d, self}, e as f}` → `a::b`, `a::c::d`, `a::c`, `a::e`.
fn expand_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let depth = prefix.len();
        prefix.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut level = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand_tree(&inner[start..k], prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand_tree(&inner[start..], prefix, out);
        prefix.truncate(depth);
    } else {
        if tree.is_empty() {
            return; // After a trailing comma.
        }
        // `path as alias`: the path is what comes before the first blank.
        let path = tree.split_whitespace().next().unwrap_or("");
        let mut full = prefix.clone();
        full.extend(segments(path));
        if !full.is_empty() {
            out.push(full);
        }
    }
}

/// In-code paths starting with one of `roots` (`crate::a::b`, `super::c`).
fn inline_paths(code: &str, roots: &[&str]) -> Vec<Located> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for root in roots {
        for at in find_word(code, root) {
            if at >= 2 && &b[at - 2..at] == b"::" {
                continue; // `super::super::x` is read from its first `super`.
            }
            if at >= 1 && b[at - 1] == b'$' {
                continue; // `$crate` in macros.
            }
            let mut segs = vec![(*root).to_owned()];
            let mut i = at + root.len();
            loop {
                let j = skip_ws(b, i);
                if !code[j..].starts_with("::") {
                    break;
                }
                let k = skip_ws(b, j + 2);
                let Some((seg, end)) = ident_at(b, k) else {
                    break;
                };
                segs.push(seg);
                i = end;
            }
            if segs.len() > 1 {
                out.push((segs, at));
            }
        }
    }
    out
}

/// The files `name` imports, with the line of the first import of each.
fn imports(graph: &Graph, name: &str) -> Vec<(String, usize)> {
    let file = &graph.files[name];
    let code = &file.lexed.code;
    let (mut paths, spans) = use_paths(code);
    // In-code paths, outside `use` statements (already read as trees).
    let mut outside = code.clone().into_bytes();
    for (from, to) in &spans {
        blank(&mut outside, *from, *to);
    }
    let outside = String::from_utf8_lossy(&outside).into_owned();
    let lib = graph.crates.iter().position(|c| c.name == "enforcer");
    let mut roots = vec!["crate", "super", "self"];
    if graph.crates[file.krate].name == "main" {
        roots.push("enforcer");
    }
    paths.extend(inline_paths(&outside, &roots));
    let children: BTreeSet<&String> = file.lexed.modules.iter().collect();
    let mut out = Vec::new();
    for (path, at) in paths {
        let (krate, absolute) = match path[0].as_str() {
            "crate" => (file.krate, path[1..].to_vec()),
            "enforcer" if graph.crates[file.krate].name == "main" => {
                let Some(lib) = lib else { continue };
                (lib, path[1..].to_vec())
            }
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let Some(keep) = file.module.len().checked_sub(ups) else {
                    continue;
                };
                let mut abs = file.module[..keep].to_vec();
                abs.extend_from_slice(&path[ups..]);
                (file.krate, abs)
            }
            "self" => {
                let mut abs = file.module.clone();
                abs.extend_from_slice(&path[1..]);
                (file.krate, abs)
            }
            first if children.contains(&first.to_owned()) => {
                let mut abs = file.module.clone();
                abs.extend_from_slice(&path);
                (file.krate, abs)
            }
            _ => continue,
        };
        if let Some(target) = resolve(graph, krate, &absolute) {
            out.push((target, line_of(code, at)));
        }
    }
    out
}

/// The top-level module (folder) of a file: `compile/host.rs` → `compile`; the crate
/// roots → `None` (they only declare modules).
fn folder(graph: &Graph, name: &str) -> Option<String> {
    let file = &graph.files[name];
    match (graph.crates[file.krate].name, file.module.first()) {
        ("main", None) => Some("main".to_owned()),
        (_, first) => first.cloned(),
    }
}

/// Strongly connected components with more than one node.
fn cycles(nodes: &BTreeSet<String>, edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let index: BTreeMap<&String, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let names: Vec<&String> = nodes.iter().collect();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (a, b) in edges {
        if let (Some(&i), Some(&j)) = (index.get(a), index.get(b)) {
            adj[i].push(j);
        }
    }
    // Tarjan's algorithm, iteratively.
    let n = nodes.len();
    let (mut idx, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut next) = (Vec::new(), Vec::new(), 0);
    for root in 0..n {
        if idx[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 && idx[v] == usize::MAX {
                idx[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on[v] = true;
            }
            if let Some(&w) = adj[v].get(*child) {
                *child += 1;
                if idx[w] == usize::MAX {
                    work.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(idx[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == idx[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    component.push(names[w].clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    out.push(component);
                }
            }
        }
    }
    out
}

fn fail_with(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{rule}: {} violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

#[test]
fn no_import_cycles_between_files_or_folders() {
    let graph = build_graph();
    let mut violations = Vec::new();

    let nodes: BTreeSet<String> = graph.files.keys().cloned().collect();
    let edges: BTreeSet<(String, String)> = graph.edges.keys().cloned().collect();
    for component in cycles(&nodes, &edges) {
        let members: BTreeSet<&String> = component.iter().collect();
        let inside: Vec<String> = graph
            .edges
            .iter()
            .filter(|((a, b), _)| members.contains(a) && members.contains(b))
            .map(|((a, b), line)| format!("{a}:{line} → {b}"))
            .collect();
        violations.push(format!(
            "file cycle among {}: {}",
            component.join(", "),
            inside.join("; ")
        ));
    }

    let mut folder_edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for ((a, b), line) in &graph.edges {
        if let (Some(fa), Some(fb)) = (folder(&graph, a), folder(&graph, b))
            && fa != fb
        {
            folder_edges
                .entry((fa, fb))
                .or_insert_with(|| format!("{a}:{line} → {b}"));
        }
    }
    let folders: BTreeSet<String> = folder_edges
        .keys()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let folder_edge_set: BTreeSet<(String, String)> = folder_edges.keys().cloned().collect();
    for component in cycles(&folders, &folder_edge_set) {
        let members: BTreeSet<&String> = component.iter().collect();
        let inside: Vec<String> = folder_edges
            .iter()
            .filter(|((a, b), _)| members.contains(a) && members.contains(b))
            .map(|((a, b), example)| format!("{a} → {b} (e.g. {example})"))
            .collect();
        violations.push(format!(
            "folder cycle among {}: {}",
            component.join(", "),
            inside.join("; ")
        ));
    }
    fail_with("import cycles", &violations);
}

#[test]
fn imports_go_down_the_layers() {
    let graph = build_graph();
    let ranks: BTreeMap<&str, u32> = RANKS.iter().copied().collect();
    let mut violations = Vec::new();
    let mut unranked: BTreeMap<String, String> = BTreeMap::new();
    for name in graph.files.keys() {
        if let Some(f) = folder(&graph, name)
            && !ranks.contains_key(f.as_str())
        {
            unranked.entry(f).or_insert_with(|| name.clone());
        }
    }
    for (f, example) in &unranked {
        violations.push(format!(
            "module `{f}` ({example}) has no rank in RANKS: place it in a layer"
        ));
    }
    for ((a, b), line) in &graph.edges {
        let (Some(fa), Some(fb)) = (folder(&graph, a), folder(&graph, b)) else {
            continue;
        };
        if fa == fb {
            continue;
        }
        if fb == LEAF && !LEAF_IMPORTERS.contains(&a.as_str()) {
            violations.push(format!(
                "{a}:{line} imports {b}: `{LEAF}` is a leaf (only {LEAF_IMPORTERS:?} may import it)"
            ));
        }
        let (Some(&ra), Some(&rb)) = (ranks.get(fa.as_str()), ranks.get(fb.as_str())) else {
            continue;
        };
        if ra <= rb {
            violations.push(format!(
                "{a}:{line} imports {b}: `{fa}` (rank {ra}) may import only lower ranks, `{fb}` is rank {rb}"
            ));
        }
    }
    fail_with("layering", &violations);
}

#[test]
fn no_product_source_file_over_the_limit() {
    let root = workspace();
    let mut violations = Vec::new();
    for dir in PRODUCT_SOURCES {
        let base = root.join(dir);
        let mut files = Vec::new();
        rust_files(&base, &mut files);
        for path in files {
            let rel_path = rel(&path, &base);
            if is_test_path(&rel_path) {
                continue;
            }
            let lines = read(&path).lines().count();
            if lines > MAX_FILE_LINES {
                violations.push(format!("{dir}/{rel_path}: {lines} lines"));
            }
        }
    }
    fail_with(
        &format!("source files over {MAX_FILE_LINES} lines"),
        &violations,
    );
}

#[test]
fn no_function_over_the_limit_in_compile_and_policy() {
    let src = agent_src();
    let mut violations = Vec::new();
    for dir in FN_LIMITED {
        let mut files = Vec::new();
        let folder_path = src.join(dir);
        if folder_path.is_dir() {
            rust_files(&folder_path, &mut files);
        }
        let single = src.join(format!("{dir}.rs"));
        if single.is_file() {
            files.push(single);
        }
        for path in files {
            let rel_path = rel(&path, &src);
            if is_test_path(&rel_path) {
                continue;
            }
            let code = lex(&read(&path)).code;
            for (name, lines, line) in functions(&code) {
                if lines > MAX_FN_LINES {
                    violations.push(format!("{rel_path}:{line} fn {name}: {lines} lines"));
                }
            }
        }
    }
    fail_with(
        &format!("functions over {MAX_FN_LINES} lines in {FN_LIMITED:?}"),
        &violations,
    );
}

/// Every `fn` with a body: (name, lines from `fn` to the closing brace, first line).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for at in find_word(code, "fn") {
        let Some((name, mut i)) = ident_at(b, skip_ws(b, at + 2)) else {
            continue;
        };
        // The body starts at the first `{` outside the signature's (), [] and <>.
        let mut depth = 0i32;
        let mut body = None;
        while i < b.len() {
            match b[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'{' if depth == 0 => {
                    body = Some(i);
                    break;
                }
                b';' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let Some(open) = body else { continue };
        let end = matching_brace(b, open);
        let first = line_of(code, at);
        let last = line_of(code, end.saturating_sub(1));
        out.push((name, last - first + 1, first));
    }
    out
}

// ---------------------------------------------------------------------------------
// The checker's own pieces, on small inputs (so a rule cannot pass by reading nothing).
// ---------------------------------------------------------------------------------

#[test]
fn the_lexer_blanks_comments_and_literals() {
    let code =
        strip("let a = \"crate::x\"; // crate::y\n/* crate::z */ let c = 'c'; r#\"crate::w\"#");
    assert!(!code.contains("crate"), "{code}");
    assert_eq!(code.lines().count(), 2);
}

#[test]
fn use_trees_expand_to_paths() {
    let (paths, _) = use_paths("use crate::a::{b, c::{d, self}, e as f};\npub use super::g::*;");
    let paths: Vec<String> = paths.into_iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c",
            "crate::a::e",
            "super::g"
        ]
    );
}

#[test]
fn cycles_are_found() {
    let nodes: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .map(|(x, y)| (x.to_owned(), y.to_owned()))
        .into();
    assert_eq!(cycles(&nodes, &edges), vec![vec!["a", "b", "c"]]);
}

#[test]
fn long_functions_are_measured() {
    let code = lex("fn short() {}\n#[cfg(test)]\nmod tests {\n fn hidden() {\n}\n}\nfn two<T>(x: [u8; 2]) -> T\nwhere T: Default {\n    T::default()\n}\n").code;
    let found: Vec<(String, usize)> = functions(&code)
        .into_iter()
        .map(|(n, l, _)| (n, l))
        .collect();
    assert_eq!(found, [("short".to_owned(), 1), ("two".to_owned(), 4)]);
}

#[test]
fn the_graph_sees_the_crate() {
    let graph = build_graph();
    assert!(
        graph.files.len() > 20,
        "only {} files found",
        graph.files.len()
    );
    assert!(
        graph.edges.len() > 20,
        "only {} imports found",
        graph.edges.len()
    );
    assert!(
        graph.files.contains_key("cli/mod.rs"),
        "the binary's files are read"
    );
}

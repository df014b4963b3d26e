//! The README's examples, for the tests that run them as written: fenced blocks tagged
//! `sh offline` (unprivileged: `check`, `matrix`, `explain` on files of the
//! repository) and `sh lab` (run as root, in order, in one lab). Each line of such a
//! block is one `enforcer` command; a trailing `# … exit N …` comment gives its exit
//! status (default 0), and `< FILE` its standard input.

use std::path::{Path, PathBuf};

/// One example command.
#[derive(Clone, Debug)]
pub struct Example {
    /// The line as written (for messages).
    pub line: String,
    /// README line number.
    pub number: usize,
    /// The arguments after `enforcer`.
    pub args: Vec<String>,
    /// Standard input (`< FILE`).
    pub stdin: Option<String>,
    /// The exit status the comment promises (default 0).
    pub exit: i32,
}

/// A fenced block: its tag (`sh offline`, `sh lab`, `sh`, …) and its lines.
pub struct Block {
    pub tag: String,
    pub lines: Vec<(usize, String)>,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every fenced block of README.md.
pub fn blocks() -> Vec<Block> {
    let path = workspace().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(tag) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => {
                    current = Some(Block {
                        tag: tag.trim().to_owned(),
                        lines: Vec::new(),
                    });
                }
            }
        } else if let Some(block) = current.as_mut() {
            block.lines.push((i + 1, line.to_owned()));
        }
    }
    out
}

/// Splits a command line as a shell would for these examples: blanks separate words,
/// single and double quotes group them.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// Parses one example line (`enforcer ARGS [< FILE]   # comment`).
pub fn example(number: usize, line: &str) -> Example {
    let (command, comment) = match line.find(" # ") {
        Some(i) => (&line[..i], &line[i + 3..]),
        None => (line, ""),
    };
    let exit = comment
        .split("exit ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut words = words(command);
    let mut stdin = None;
    if let Some(i) = words.iter().position(|w| w == "<") {
        stdin = words.get(i + 1).cloned();
        words.truncate(i);
    }
    assert_eq!(
        words.first().map(String::as_str),
        Some("enforcer"),
        "README line {number}: a runnable example is one enforcer command: {line}"
    );
    Example {
        line: line.to_owned(),
        number,
        args: words[1..].to_vec(),
        stdin,
        exit,
    }
}

/// The examples of the blocks tagged `sh TAG`, in README order.
pub fn examples(tag: &str) -> Vec<Example> {
    let want = format!("sh {tag}");
    blocks()
        .into_iter()
        .filter(|b| b.tag == want)
        .flat_map(|b| b.lines)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| example(n, &l))
        .collect()
}

/// The files an `enforcer` command line of any block names (after `-f`, `--apply`,
/// `--diff`, `<`): `(README line, path)`.
pub fn named_files() -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for block in blocks().into_iter().filter(|b| b.tag.starts_with("sh")) {
        for (number, line) in block.lines {
            // Every `enforcer …` command of the line (after `|` or `;` too).
            for part in line.split(['|', ';']) {
                let part = part.split(" # ").next().unwrap_or_default();
                let w = words(part);
                let Some(start) = w.iter().position(|x| x == "enforcer") else {
                    continue;
                };
                let w = &w[start..];
                for (i, word) in w.iter().enumerate() {
                    let takes = match word.as_str() {
                        "-f" | "--filename" | "--apply" | "<" => 1,
                        "--diff" => 2,
                        _ => 0,
                    };
                    for file in w.iter().skip(i + 1).take(takes) {
                        if file != "-" {
                            out.push((number, file.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

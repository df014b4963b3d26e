//! Shrinking a failing differential case ([`minimise`]): fewer documents, then fewer
//! fields, rules and list elements, to a fixed point.

use serde_json::Value;

use crate::eval::Packet;

/// Paths (object keys and array indices) of every node under `spec` and
/// `metadata.labels` of a document, deepest first: what [`minimise`] tries to delete.
fn removable_paths(doc: &Value) -> Vec<Vec<PathStep>> {
    fn walk(v: &Value, path: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(PathStep::Key(k.clone()));
                    walk(child, path, out);
                    out.push(path.clone());
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate().rev() {
                    path.push(PathStep::Index(i));
                    walk(child, path, out);
                    out.push(path.clone());
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for root in [&["spec"][..], &["metadata", "labels"][..]] {
        let mut node = doc;
        let mut path = Vec::new();
        for k in root {
            path.push(PathStep::Key((*k).to_owned()));
            node = &node[*k];
        }
        walk(node, &mut path, &mut out);
    }
    out
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

/// `doc` without the node at `path` (unchanged if there is none).
fn without(doc: &Value, path: &[PathStep]) -> Value {
    let mut out = doc.clone();
    let Some((last, parents)) = path.split_last() else {
        return out;
    };
    let mut node = &mut out;
    for step in parents {
        let next = match step {
            PathStep::Key(k) => node.get_mut(k.as_str()),
            PathStep::Index(i) => node.get_mut(*i),
        };
        let Some(next) = next else { return doc.clone() };
        node = next;
    }
    match (last, node) {
        (PathStep::Key(k), Value::Object(m)) => {
            m.remove(k);
        }
        (PathStep::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
    out
}

/// Shrinks a failing case: one packet if one suffices, then, to a fixed point, drops
/// whole documents and every field, rule and list element under their `spec` and
/// labels while `fails` (which returns the mismatch it saw) still fails. Returns the
/// smallest documents and packets found and the last mismatch message.
pub fn minimise(
    mut objects: Vec<Value>,
    mut packets: Vec<Packet>,
    mut fails: impl FnMut(&[Value], &[Packet]) -> Option<String>,
) -> (Vec<Value>, Vec<Packet>, String) {
    let mut message = fails(&objects, &packets).unwrap_or_default();
    // One packet is enough.
    for i in 0..packets.len() {
        if let Some(m) = fails(&objects, &packets[i..=i]) {
            packets = vec![packets[i]];
            message = m;
            break;
        }
    }
    let mut changed = true;
    while changed {
        changed = false;
        let mut i = 0;
        while i < objects.len() {
            let mut fewer = objects.clone();
            fewer.remove(i);
            if let Some(m) = fails(&fewer, &packets) {
                objects = fewer;
                message = m;
                changed = true;
            } else {
                i += 1;
            }
        }
        for o in 0..objects.len() {
            // Paths are recomputed after every accepted removal (indices shift).
            let mut p = 0;
            loop {
                let paths = removable_paths(&objects[o]);
                let Some(path) = paths.get(p) else { break };
                let mut fewer = objects.clone();
                fewer[o] = without(&objects[o], path);
                if let Some(m) = fails(&fewer, &packets) {
                    objects = fewer;
                    message = m;
                    changed = true;
                } else {
                    p += 1;
                }
            }
        }
    }
    (objects, packets, message)
}

//! Finding a field's line and column again after loading: diagnostics about an object
//! (from validation or lints) name a field path such as `spec.ingress[0].source`, and
//! people want the line it is written on.

use super::located::tree::{Node, NodeValue, Position};

/// Position of `field` (a path like `spec.ingress[0].from[1]`) inside the object that
/// starts at `object_line` of document `document` of `text`. The position is the
/// field's key (or the list item); the nearest existing ancestor when the path goes
/// further than the text (defaulted fields); `None` when the text does not parse.
pub fn field_position(
    text: &str,
    document: usize,
    object_line: u32,
    field: &str,
) -> Option<Position> {
    let docs: Vec<Node> = serde_saphyr::from_multiple(text).ok()?;
    let doc = docs.get(document)?;
    let object = if doc.line == object_line {
        doc
    } else {
        // A `List`: the item that starts on the object's line.
        match lookup_key(doc, "items").map(|(_, v)| &v.value) {
            Some(NodeValue::Seq(items)) => items.iter().find(|i| i.line == object_line)?,
            _ => doc,
        }
    };
    let mut node = object;
    let mut best = position(object);
    for segment in field.split('.').filter(|s| !s.is_empty()) {
        let (key, indices) = split_indices(segment);
        if !key.is_empty() {
            let Some((k, v)) = lookup_key(node, key) else {
                return Some(best);
            };
            best = position(k);
            node = v;
        }
        for index in indices {
            let NodeValue::Seq(items) = &node.value else {
                return Some(best);
            };
            let Some(item) = items.get(index) else {
                return Some(best);
            };
            best = position(item);
            node = item;
        }
    }
    Some(best)
}

fn position(node: &Node) -> Position {
    Position {
        line: node.line,
        column: node.column,
    }
}

fn lookup_key<'a>(node: &'a Node, key: &str) -> Option<(&'a Node, &'a Node)> {
    let NodeValue::Map(entries) = &node.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == key))
        .map(|(k, v)| (k, v))
}

/// `ingress[0][1]` → (`ingress`, [0, 1]).
fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    let key_end = segment.find('[').unwrap_or(segment.len());
    let indices = segment[key_end..]
        .split(['[', ']'])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (&segment[..key_end], indices)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n  - action: Allow\n  - action: Deny\n    source:\n      nets: [10.0.0.0/8]\n";

    #[test]
    fn finds_fields_and_items() {
        let at = |field| field_position(TEXT, 1, 5, field).unwrap();
        assert_eq!(at("spec").line, 9);
        assert_eq!(at("spec.ingress[1]").line, 12);
        assert_eq!(at("spec.ingress[1].source.nets[0]").line, 14);
        // Past what is written: the nearest ancestor.
        assert_eq!(at("spec.ingress[1].destination.ports").line, 12);
        assert_eq!(at("spec.egress").line, 9);
    }

    #[test]
    fn finds_list_items() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: b\n";
        assert_eq!(
            field_position(text, 0, 7, "metadata.name").unwrap().line,
            10
        );
    }
}

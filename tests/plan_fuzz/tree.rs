//! Edits of a plan's TOML tree: any value replaced by one of any type, keys
//! and array elements deleted or duplicated. They exercise the schema, which
//! the mutations of `Plan` values cannot reach.

use proptest::prelude::*;

use super::mutation::float;

/// One edit of a TOML tree: a path of indices (each taken modulo the width
/// of the table or array it indexes) and what to do at its end.
#[derive(Debug, Clone)]
pub(super) enum TreeEdit {
    Replace(toml::Value),
    Remove,
    Duplicate,
}

fn toml_leaf() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    prop_oneof![
        any::<i64>().prop_map(V::Integer),
        prop::sample::select(vec![0i64, -1, 1, 256, i64::MAX, i64::MIN]).prop_map(V::Integer),
        float().prop_map(V::Float),
        ".{0,8}".prop_map(V::String),
        any::<bool>().prop_map(V::Boolean),
        Just(V::Array(vec![])),
        Just(V::Table(toml::Table::new())),
    ]
}

pub(super) fn tree_edit() -> impl Strategy<Value = (Vec<usize>, TreeEdit)> {
    let edit = prop_oneof![4 => toml_leaf().prop_map(TreeEdit::Replace), 1 => Just(TreeEdit::Remove), 1 => Just(TreeEdit::Duplicate)];
    (prop::collection::vec(any::<usize>(), 1..6), edit)
}

/// Applies `edit` at the end of `path` in `value` (stopping early at a leaf).
pub(super) fn edit_tree(value: &mut toml::Value, path: &[usize], edit: &TreeEdit) {
    let Some((&i, rest)) = path.split_first() else { return };
    match value {
        toml::Value::Table(t) if !t.is_empty() => {
            let key = t.keys().nth(i % t.len()).unwrap().clone();
            let is_leaf = !matches!(t[&key], toml::Value::Table(_) | toml::Value::Array(_));
            if rest.is_empty() || is_leaf {
                match edit {
                    TreeEdit::Replace(v) => {
                        t.insert(key, v.clone());
                    }
                    TreeEdit::Remove => {
                        t.remove(&key);
                    }
                    TreeEdit::Duplicate => {
                        let v = t[&key].clone();
                        t.insert(format!("{key}_copy"), v);
                    }
                }
            } else {
                edit_tree(t.get_mut(&key).unwrap(), rest, edit);
            }
        }
        toml::Value::Array(a) if !a.is_empty() => {
            let n = i % a.len();
            let is_leaf = !matches!(a[n], toml::Value::Table(_) | toml::Value::Array(_));
            if rest.is_empty() || is_leaf {
                match edit {
                    TreeEdit::Replace(v) => a[n] = v.clone(),
                    TreeEdit::Remove => {
                        a.remove(n);
                    }
                    TreeEdit::Duplicate => {
                        let v = a[n].clone();
                        a.insert(n, v);
                    }
                }
            } else {
                edit_tree(&mut a[n], rest, edit);
            }
        }
        _ => {}
    }
}

//! A structural JSON diff: the paths added, removed and changed between two values.

use serde_json::{json, Value};

/// One difference at a JSON Pointer path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    Added {
        path: String,
        value: Value,
    },
    Removed {
        path: String,
        value: Value,
    },
    Changed {
        path: String,
        from: Value,
        to: Value,
    },
}

impl Change {
    pub(crate) fn to_json(&self, section: &str) -> Value {
        match self {
            Change::Added { path, value } => {
                json!({"section": section, "change": "added", "path": path, "to": value})
            }
            Change::Removed { path, value } => {
                json!({"section": section, "change": "removed", "path": path, "from": value})
            }
            Change::Changed { path, from, to } => {
                json!({"section": section, "change": "changed", "path": path, "from": from, "to": to})
            }
        }
    }
}

/// The changes from `from` to `to`, computed as a JSON Patch (json-patch) and read back as
/// added, removed and changed paths.
pub(crate) fn diff(from: &Value, to: &Value) -> Vec<Change> {
    let patch = json_patch::diff(from, to);
    patch
        .0
        .into_iter()
        .filter_map(|op| match op {
            json_patch::PatchOperation::Add(add) => Some(Change::Added {
                path: add.path.to_string(),
                value: add.value,
            }),
            json_patch::PatchOperation::Remove(remove) => {
                let path = remove.path.to_string();
                let value = from.pointer(&path).cloned().unwrap_or(Value::Null);
                Some(Change::Removed { path, value })
            }
            json_patch::PatchOperation::Replace(replace) => {
                let path = replace.path.to_string();
                let old = from.pointer(&path).cloned().unwrap_or(Value::Null);
                Some(Change::Changed {
                    path,
                    from: old,
                    to: replace.value,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_added_removed_and_changed() {
        let from = json!({"a": 1, "b": {"c": [1, 2]}, "gone": true});
        let to = json!({"a": 2, "b": {"c": [1, 2, 3]}, "new": "x"});
        let mut changes = diff(&from, &to);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert!(changes.contains(&Change::Changed {
            path: "/a".into(),
            from: json!(1),
            to: json!(2)
        }));
        assert!(changes.contains(&Change::Added {
            path: "/b/c/2".into(),
            value: json!(3)
        }));
        assert!(changes.contains(&Change::Removed {
            path: "/gone".into(),
            value: json!(true)
        }));
        assert!(changes.contains(&Change::Added {
            path: "/new".into(),
            value: json!("x")
        }));
        assert_eq!(changes.len(), 4);
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"x": [1, {"y": null}]});
        assert!(diff(&v, &v).is_empty());
    }
}

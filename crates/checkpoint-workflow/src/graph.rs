//! Graph fingerprints: what a [`Workflow`](crate::Workflow)'s structure was when a checkpoint
//! was saved, and what changed since.
//!
//! A workflow's shape is its start node, its node names, the successors declared with
//! [`Workflow::edges`](crate::Workflow::edges) and its interrupt points; never the code of its
//! nodes. Its [`Fingerprint`] is a SHA-256 of a fixed encoding of that shape, so it is the
//! same in every process and every build, whatever order the workflow was built in, and it
//! changes exactly when the shape does. The runner records it, and the node names, in the
//! metadata of every checkpoint ([`meta::GRAPH`](crate::meta::GRAPH),
//! [`meta::GRAPH_NODES`](crate::meta::GRAPH_NODES)) and compares it on resume.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha256};

/// A workflow's structure: what its [`Fingerprint`] is computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphShape {
    /// The node a new execution starts at.
    pub start: String,
    /// Every node's name.
    pub nodes: BTreeSet<String>,
    /// The declared successors of each node that declares them ([`crate::meta::END`] for the
    /// end of the run).
    pub edges: BTreeMap<String, BTreeSet<String>>,
    /// The nodes a run pauses before.
    pub interrupt_before: BTreeSet<String>,
    /// The nodes a run pauses after.
    pub interrupt_after: BTreeSet<String>,
}

/// The fingerprint of a [`GraphShape`]: 32 lowercase hex digits (the first 128 bits of a
/// SHA-256).
///
/// ```
/// use checkpoint_workflow::{Next, Workflow};
///
/// let a = Workflow::new("plan")
///     .node("plan", |s: u32| async move { Ok((s, Next::to("act"))) })
///     .node("act", |s: u32| async move { Ok((s, Next::End)) });
/// let b = Workflow::new("plan")
///     .node("act", |s: u32| async move { Ok((s + 1, Next::End)) })
///     .node("plan", |s: u32| async move { Ok((s * 2, Next::to("act"))) });
/// // The same names and structure, whatever the nodes do or the order they were added in.
/// assert_eq!(a.fingerprint(), b.fingerprint());
/// assert_ne!(a.fingerprint(), a.interrupt_before("act").fingerprint());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint as text, as recorded in metadata.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Feeds a length-prefixed encoding to the hash, so no two shapes encode alike (a name that
/// contains a separator cannot pass for two names).
struct Encoder(Sha256);

impl Encoder {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn names<'a>(&mut self, tag: &str, names: impl ExactSizeIterator<Item = &'a String>) {
        self.bytes(tag.as_bytes());
        self.0.update((names.len() as u64).to_be_bytes());
        for name in names {
            self.bytes(name.as_bytes());
        }
    }
}

impl GraphShape {
    /// The shape's fingerprint. Its encoding is fixed (and pinned by a test): changing it
    /// would make every paused execution look as if its graph had changed.
    ///
    /// The SHA-256 is taken over, in order: the text `checkpoint-workflow graph 1`, the start
    /// node, then the sections `nodes`, `edges` (the nodes that declare successors), one `to`
    /// section per such node (its successors), `interrupt_before` and `interrupt_after`.
    /// Every text is its length as a big-endian u64 followed by its UTF-8 bytes; a section is
    /// its tag, its count as a big-endian u64, then its names in sorted order.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut encoder = Encoder(Sha256::new());
        encoder.bytes(b"checkpoint-workflow graph 1");
        encoder.bytes(self.start.as_bytes());
        encoder.names("nodes", self.nodes.iter());
        encoder.names("edges", self.edges.keys());
        for targets in self.edges.values() {
            encoder.names("to", targets.iter());
        }
        encoder.names("interrupt_before", self.interrupt_before.iter());
        encoder.names("interrupt_after", self.interrupt_after.iter());
        let digest = encoder.0.finalize();
        Fingerprint(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// How a workflow's graph differs from the one an execution was saved under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphChange {
    /// The fingerprint recorded in the execution's latest checkpoint.
    pub stored: String,
    /// This workflow's fingerprint.
    pub current: Fingerprint,
    /// Nodes this workflow has that the stored graph did not (renamed ones excepted).
    pub added: Vec<String>,
    /// Nodes the stored graph had that this workflow does not (renamed ones excepted).
    pub removed: Vec<String>,
    /// Nodes renamed by [`Workflow::renamed`](crate::Workflow::renamed), old name first, that
    /// the stored graph had.
    pub renamed: Vec<(String, String)>,
}

impl GraphChange {
    /// Compares the stored graph's nodes with `shape`, through `renames` (old name to new).
    pub(crate) fn between(
        stored: String,
        stored_nodes: &BTreeSet<String>,
        shape: &GraphShape,
        renames: &BTreeMap<String, String>,
    ) -> Self {
        let renamed: Vec<(String, String)> = renames
            .iter()
            .filter(|(old, _)| stored_nodes.contains(*old))
            .map(|(old, new)| (old.clone(), new.clone()))
            .collect();
        let removed = stored_nodes
            .iter()
            .filter(|n| !shape.nodes.contains(*n) && !renames.contains_key(*n))
            .cloned()
            .collect();
        let added = shape
            .nodes
            .iter()
            .filter(|n| !stored_nodes.contains(*n) && !renamed.iter().any(|(_, to)| to == *n))
            .cloned()
            .collect();
        GraphChange {
            stored,
            current: shape.fingerprint(),
            added,
            removed,
            renamed,
        }
    }
}

impl fmt::Display for GraphChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph {} is now {}", self.stored, self.current)?;
        let list = |names: &[String]| names.join(", ");
        if !self.added.is_empty() {
            write!(f, "; nodes added: {}", list(&self.added))?;
        }
        if !self.removed.is_empty() {
            write!(f, "; nodes removed: {}", list(&self.removed))?;
        }
        if !self.renamed.is_empty() {
            let pairs: Vec<String> = self
                .renamed
                .iter()
                .map(|(old, new)| format!("{old} -> {new}"))
                .collect();
            write!(f, "; nodes renamed: {}", pairs.join(", "))?;
        }
        if self.added.is_empty() && self.removed.is_empty() && self.renamed.is_empty() {
            write!(f, "; the same nodes, other edges or interrupts")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, btree_set};
    use proptest::prelude::*;

    fn names(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pinned() -> GraphShape {
        GraphShape {
            start: "plan".into(),
            nodes: names(&["plan", "act", "review"]),
            edges: [("plan".to_owned(), names(&["act", "__end__"]))]
                .into_iter()
                .collect(),
            interrupt_before: names(&["review"]),
            interrupt_after: BTreeSet::new(),
        }
    }

    #[test]
    fn the_fingerprint_of_a_fixed_shape_never_changes() {
        // Stored executions compare against fingerprints written by earlier builds: this value
        // must stay what it was when the encoding was fixed. It was computed apart from this
        // code, from the encoding described in `GraphShape::fingerprint`.
        assert_eq!(
            pinned().fingerprint().as_str(),
            "585790941d452752abc26d0025a2a9e6"
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-c]{1,2}"
    }

    fn shape() -> impl Strategy<Value = GraphShape> {
        (
            name(),
            btree_set(name(), 0..5),
            btree_map(name(), btree_set(name(), 0..3), 0..3),
            btree_set(name(), 0..3),
            btree_set(name(), 0..3),
        )
            .prop_map(|(start, nodes, edges, interrupt_before, interrupt_after)| {
                GraphShape {
                    start,
                    nodes,
                    edges,
                    interrupt_before,
                    interrupt_after,
                }
            })
    }

    proptest! {
        #[test]
        fn fingerprints_differ_exactly_when_shapes_do(a in shape(), b in shape()) {
            prop_assert_eq!(a == b, a.fingerprint() == b.fingerprint());
        }

        #[test]
        fn moving_a_name_between_parts_changes_the_fingerprint(a in shape(), extra in "[d-e]{1,2}") {
            let mut variants = Vec::new();
            let mut s = a.clone(); s.nodes.insert(extra.clone()); variants.push(s);
            let mut s = a.clone(); s.interrupt_before.insert(extra.clone()); variants.push(s);
            let mut s = a.clone(); s.interrupt_after.insert(extra.clone()); variants.push(s);
            let mut s = a.clone(); s.edges.insert(extra.clone(), BTreeSet::new()); variants.push(s);
            let mut s = a.clone(); s.start.push_str(&extra); variants.push(s);
            let mut prints: BTreeSet<Fingerprint> = variants.iter().map(GraphShape::fingerprint).collect();
            prints.insert(a.fingerprint());
            prop_assert_eq!(prints.len(), 6);
        }
    }

    #[test]
    fn a_change_names_the_nodes_added_removed_and_renamed() {
        let stored = names(&["plan", "act", "review", "old"]);
        let shape = GraphShape {
            start: "plan".into(),
            nodes: names(&["plan", "act", "check", "audit"]),
            ..GraphShape::default()
        };
        let renames = [("review".to_owned(), "check".to_owned())]
            .into_iter()
            .collect();
        let change = GraphChange::between("abc".into(), &stored, &shape, &renames);
        assert_eq!(change.added, ["audit"]);
        assert_eq!(change.removed, ["old"]);
        assert_eq!(change.renamed, [("review".to_owned(), "check".to_owned())]);
        assert_eq!(
            change.to_string(),
            format!(
                "graph abc is now {}; nodes added: audit; nodes removed: old; nodes renamed: review -> check",
                shape.fingerprint()
            )
        );
    }
}

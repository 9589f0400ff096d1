//! No dependency cycles between the modules of a crate: two modules that use each other are
//! one concern in two files, or two concerns tangled; either way the dependency should run one
//! way.
//!
//! Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) gives a tree of file-level
//! modules, found by following `mod name;` items. A module uses another when its file names
//! a path into it: `crate::…`, `self::…` or `super::…`, in `use` items (grouped trees too) and
//! in expressions. A use between a module and its ancestor or descendant is the normal tree
//! and is not counted. Any other use is counted between the two sibling modules under the
//! common ancestor (`crate::a::x` using `crate::b::y` is `a -> b`), and a cycle among
//! siblings is reported with the file and line of each of its edges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use super::rust_text::{FileItems, file_items};
use super::{Problem, relative};

/// A module path from the crate root (`["routes", "workspaces"]`).
type ModPath = Vec<String>;

/// One file-level module of a crate.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    /// Its path from the crate root.
    pub module: ModPath,
    /// Its file.
    pub file: PathBuf,
    /// What the file declares and uses.
    pub items: FileItems,
}

/// Where a module uses another: file and line.
type Sites = Vec<(PathBuf, usize)>;

/// The findings over this workspace: every crate under `crates/`, and `xtask`.
pub fn check(root: &Path) -> anyhow::Result<Vec<Problem>> {
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    crate_dirs.sort();
    crate_dirs.push(root.join("xtask"));
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut problems = Vec::new();
    for dir in crate_dirs {
        for crate_root in crate_roots(&dir.join("src")) {
            let modules = load(&crate_root, &read);
            let label = relative(root, &crate_root);
            for cycle in cycles(&modules) {
                problems.push(report(root, &label, &cycle));
            }
        }
    }
    Ok(problems)
}

/// The crate roots in a `src/` folder.
fn crate_roots(src: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = bins
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}

/// The file-level modules of the crate whose root file is `root`, files read by `read`. A
/// `mod` whose file cannot be read is left out.
pub fn load(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Vec<ModuleFile> {
    let mut out = Vec::new();
    let mut queue = VecDeque::from([(root.to_path_buf(), ModPath::new(), true)]);
    while let Some((file, module, mod_rs)) = queue.pop_front() {
        let Some(text) = read(&file) else { continue };
        let items = file_items(&text, &module);
        // The folder of child modules: beside a `mod.rs`/root file, else in a folder named
        // like the file (`a.rs` -> `a/`).
        let Some(parent) = file.parent() else {
            continue;
        };
        let base = if mod_rs {
            parent.to_path_buf()
        } else {
            parent.join(file.file_stem().unwrap_or_default())
        };
        for decl in &items.mods {
            let mut dir = base.clone();
            dir.extend(&decl.inline);
            let mut child = module.clone();
            child.extend(decl.inline.iter().cloned());
            child.push(decl.name.clone());
            let flat = dir.join(format!("{}.rs", decl.name));
            let nested = dir.join(&decl.name).join("mod.rs");
            if read(&flat).is_some() {
                queue.push_back((flat, child, false));
            } else {
                queue.push_back((nested, child, true));
            }
        }
        out.push(ModuleFile {
            module,
            file,
            items,
        });
    }
    out
}

/// The uses between sibling modules: `(from, to)` with the places that make each.
pub fn edges(modules: &[ModuleFile]) -> BTreeMap<(ModPath, ModPath), Sites> {
    let known: BTreeSet<&ModPath> = modules.iter().map(|m| &m.module).collect();
    let mut edges: BTreeMap<(ModPath, ModPath), Sites> = BTreeMap::new();
    for m in modules {
        for path in &m.items.paths {
            // The deepest known module the path goes through.
            let target = (0..=path.segments.len())
                .rev()
                .map(|n| &path.segments[..n])
                .find(|p| known.contains(&p.to_vec()))
                .unwrap_or_default();
            let common = m
                .module
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == m.module.len() || common == target.len() {
                continue; // an ancestor, a descendant, or itself
            }
            let from = m.module[..=common].to_vec();
            let to = target[..=common].to_vec();
            edges
                .entry((from, to))
                .or_default()
                .push((m.file.clone(), path.line));
        }
    }
    edges
}

/// One dependency cycle: the modules in order (the first is not repeated at the end), and
/// the places that make each edge (from each module to the next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The modules.
    pub modules: Vec<ModPath>,
    /// The places of each edge.
    pub sites: Vec<Sites>,
}

/// The cycles among sibling modules: for every edge that lies on a cycle, the shortest cycle
/// through it; each cycle once.
pub fn cycles(modules: &[ModuleFile]) -> Vec<Cycle> {
    let edges = edges(modules);
    let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (from, to) in edges.keys() {
        let Some(back) = shortest_path(&next, to, from) else {
            continue;
        };
        // from -> to -> … -> from, without the last `from`, started at its least module.
        let mut ring: Vec<ModPath> = std::iter::once(from)
            .chain(back[..back.len() - 1].iter().copied())
            .cloned()
            .collect();
        let least = (0..ring.len()).min_by_key(|&i| &ring[i]).unwrap_or(0);
        ring.rotate_left(least);
        if !seen.insert(ring.clone()) {
            continue;
        }
        let sites = (0..ring.len())
            .map(|i| {
                let key = (ring[i].clone(), ring[(i + 1) % ring.len()].clone());
                edges.get(&key).cloned().unwrap_or_default()
            })
            .collect();
        out.push(Cycle {
            modules: ring,
            sites,
        });
    }
    out
}

/// The shortest path `from` … `to` (both included), breadth first.
fn shortest_path<'a>(
    next: &BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
    from: &'a ModPath,
    to: &'a ModPath,
) -> Option<Vec<&'a ModPath>> {
    let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut visited = BTreeSet::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![at];
            let mut cur = at;
            while let Some(prev) = came_from.get(cur) {
                path.push(prev);
                cur = prev;
            }
            path.reverse();
            return Some(path);
        }
        for n in next.get(at).into_iter().flatten() {
            if visited.insert(n) {
                came_from.insert(n, at);
                queue.push_back(n);
            }
        }
    }
    None
}

fn name(module: &ModPath) -> String {
    module.join("::")
}

/// The finding for one cycle of the crate whose root is `label`.
fn report(root: &Path, label: &str, cycle: &Cycle) -> Problem {
    let mut ring: Vec<String> = cycle.modules.iter().map(name).collect();
    ring.push(name(&cycle.modules[0]));
    let mut message = format!("module cycle in {label}: {}", ring.join(" -> "));
    for (i, sites) in cycle.sites.iter().enumerate() {
        let (file, line) = sites.first().cloned().unwrap_or_default();
        let more = if sites.len() > 1 {
            format!(" (and {} more)", sites.len() - 1)
        } else {
            String::new()
        };
        message.push_str(&format!(
            "\n    {} -> {}: {}:{line}{more}",
            ring[i],
            ring[i + 1],
            relative(root, &file)
        ));
    }
    message.push_str(
        "\n    make the dependency run one way: move what one side needs from the other into \
         it, or into a module both may use",
    );
    let (file, line) = cycle.sites[0].first().cloned().unwrap_or_default();
    Problem {
        file: relative(root, &file),
        line,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The cycles of a crate made of `(path under src/, text)` files, as
    /// `a -> b -> a @ file:line, file:line`.
    fn found(files: &[(&str, &str)]) -> Vec<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (Path::new("src").join(p), (*t).to_owned()))
            .collect();
        let modules = load(Path::new("src/lib.rs"), &|p| files.get(p).cloned());
        cycles(&modules)
            .iter()
            .map(|c| {
                let mut ring: Vec<String> = c.modules.iter().map(name).collect();
                ring.push(ring[0].clone());
                let sites: Vec<String> = c
                    .sites
                    .iter()
                    .map(|s| format!("{}:{}", s[0].0.display(), s[0].1))
                    .collect();
                format!("{} @ {}", ring.join(" -> "), sites.join(", "))
            })
            .collect()
    }

    #[test]
    fn a_real_cycle_is_named_with_its_edges() {
        let found = found(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "//! a\nuse crate::b::x;\n"),
            ("b.rs", "fn f() {\n    crate::a::y();\n}\n"),
            ("c.rs", "use crate::a::z;\n"),
        ]);
        assert_eq!(found, ["a -> b -> a @ src/a.rs:2, src/b.rs:2"]);
    }

    #[test]
    fn grouped_uses_make_edges() {
        let found = found(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::{\n    b::{x, y},\n};\n"),
            ("b/mod.rs", "mod inner;\n"),
            ("b/inner.rs", "use crate::{a, b};\n"),
        ]);
        assert_eq!(found, ["a -> b -> a @ src/a.rs:2, src/b/inner.rs:1"]);
    }

    #[test]
    fn parents_and_children_are_not_cycles() {
        let found = found(&[
            ("lib.rs", "mod a;\nuse crate::a::inner::q;\n"),
            (
                "a.rs",
                "mod inner;\nuse self::inner::p;\nfn f() { inner::g(); }\n",
            ),
            (
                "a/inner.rs",
                "use super::p;\nuse crate::a::r;\nuse crate::t;\n#[cfg(test)]\nmod tests {\n    \
                 use super::*;\n}\n",
            ),
        ]);
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn uses_between_cousins_count_between_their_ancestors() {
        let found = found(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "mod inner;\n"),
            ("a/inner.rs", "fn f() {\n    crate::b::deep::g();\n}\n"),
            ("b.rs", "mod deep;\n"),
            ("b/deep.rs", "use super::super::a::inner::h;\n"),
        ]);
        assert_eq!(found, ["a -> b -> a @ src/a/inner.rs:2, src/b/deep.rs:1"]);
    }

    #[test]
    fn longer_cycles_are_reported_once() {
        let found = found(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::x;\n"),
            ("b.rs", "use crate::c::x;\n"),
            ("c.rs", "use crate::a::x;\n"),
        ]);
        assert_eq!(
            found,
            ["a -> b -> c -> a @ src/a.rs:1, src/b.rs:1, src/c.rs:1"]
        );
    }
}

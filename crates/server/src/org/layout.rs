//! The canvas layout of an imported tree (spec §1.3 "Layout math", must match the canvas):
//! leaves 240×130, a 2-column grid of children under a 130 px header.

const LEAF_W: f64 = 240.0;
const LEAF_H: f64 = 130.0;
const GUTTER: f64 = 14.0;
const HEADER: f64 = 130.0;
const SIDE: f64 = 16.0;

/// A node's size for layout: only the shape of its subtree matters.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Its children.
    pub children: Vec<Shape>,
}

/// The rendered size of a subtree.
pub fn size(shape: &Shape) -> (f64, f64) {
    let n = shape.children.len();
    if n == 0 {
        return (LEAF_W, LEAF_H);
    }
    let sizes: Vec<(f64, f64)> = shape.children.iter().map(size).collect();
    let (cols, row_h) = rows(&sizes);
    let w = sizes.iter().map(|s| s.0).fold(0.0, f64::max);
    let colsf = cols as f64;
    let rowsf = row_h.len() as f64;
    (
        2.0 * SIDE + w * colsf + GUTTER * (colsf - 1.0),
        HEADER + row_h.iter().sum::<f64>() + GUTTER * (rowsf - 1.0) + SIDE,
    )
}

fn rows(sizes: &[(f64, f64)]) -> (usize, Vec<f64>) {
    let cols = sizes.len().clamp(1, 2);
    let mut row_h: Vec<f64> = Vec::new();
    for (i, s) in sizes.iter().enumerate() {
        let r = i / cols;
        if row_h.len() <= r {
            row_h.push(0.0);
        }
        if let Some(h) = row_h.get_mut(r) {
            *h = h.max(s.1);
        }
    }
    (cols, row_h)
}

/// The position of child `i` relative to its parent.
pub fn slot(i: usize, children: &[Shape]) -> (f64, f64) {
    let sizes: Vec<(f64, f64)> = children.iter().map(size).collect();
    let (cols, row_h) = rows(&sizes);
    let w = sizes.iter().map(|s| s.0).fold(0.0, f64::max);
    let col = (i % cols) as f64;
    let row = i / cols;
    let y: f64 = row_h.iter().take(row).map(|h| h + GUTTER).sum();
    (SIDE + col * (w + GUTTER), HEADER + y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid() {
        let leaf = Shape::default();
        let parent = Shape {
            children: vec![leaf.clone(), leaf.clone(), leaf.clone()],
        };
        assert_eq!(size(&leaf), (240.0, 130.0));
        // 2 columns, 2 rows.
        assert_eq!(
            size(&parent),
            (32.0 + 480.0 + 14.0, 130.0 + 260.0 + 14.0 + 16.0)
        );
        assert_eq!(slot(0, &parent.children), (16.0, 130.0));
        assert_eq!(slot(1, &parent.children), (16.0 + 254.0, 130.0));
        assert_eq!(slot(2, &parent.children), (16.0, 130.0 + 144.0));
    }
}

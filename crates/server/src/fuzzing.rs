//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz`). Not an API: each
//! function runs one private input parser of the routes exactly as the route does.

use axum::body::Bytes;

/// What a `POST /workspaces` body passed validation with (the fields a fuzz target checks).
#[derive(Debug)]
pub struct CreateChecked {
    /// The workspace name.
    pub name: String,
    /// The role, when given.
    pub role: Option<String>,
    /// The model, trimmed, when given and not empty.
    pub model: Option<String>,
    /// The host directory bind-mounted at `/workspace`, when given.
    pub workspace_dir: Option<String>,
    /// Whether the workspace is external.
    pub external: bool,
    /// The agent URL of an external workspace, when given.
    pub url: Option<String>,
}

/// Parses and validates a `POST /workspaces` body as the route does before it writes anything;
/// a refusal is the status code the route would answer.
pub fn create_body(body: &[u8]) -> Result<CreateChecked, u16> {
    match crate::routes::workspaces::parse_create(&Bytes::copy_from_slice(body)) {
        Ok(v) => Ok(CreateChecked {
            name: v.new.name,
            role: v.new.role,
            model: v.model,
            workspace_dir: v.new.workspace_dir,
            external: v.external,
            url: v.url,
        }),
        Err(e) => Err(e.status().as_u16()),
    }
}

/// Parses a template's `config.yaml` as `POST /workspaces/:id/expand` does: the template's
/// `name:` and the (name, role) of each sub-workspace it would create, or the parse error.
pub fn team_config(text: &str) -> Result<TeamPlan, String> {
    let config = crate::routes::team::parse_config(text).map_err(|e| e.to_string())?;
    let name = config.name.clone();
    let declared = config.sub_workspaces.len();
    let (planned, skipped) = crate::routes::team::planned_children(config);
    let children = planned.into_iter().map(|c| (c.name, c.role)).collect();
    Ok(TeamPlan {
        name,
        declared,
        children,
        skipped,
    })
}

/// The outcome of [`team_config`].
#[derive(Debug)]
pub struct TeamPlan {
    /// The template's `name:`.
    pub name: Option<String>,
    /// How many `sub_workspaces` entries the file declares.
    pub declared: usize,
    /// The (name, role) of each sub-workspace `expand` would create, in order.
    pub children: Vec<(String, Option<String>)>,
    /// The entries skipped for want of a valid name.
    pub skipped: usize,
}

/// The template folder name `expand` looks for first, for a workspace name.
pub fn template_folder(workspace_name: &str) -> String {
    crate::routes::team::folder_name(workspace_name)
}

-- Registry cache coherence between replicas (ARCHITECTURE "Hot paths"). Each replica keeps the
-- workspace rows, live token hashes and empty-queue flags the hot paths read in memory; these
-- triggers tell every replica, on commit, through NOTIFY on `molecule_cache`, what to forget:
-- `w:<id>` when a workspace's routing fields change or its row goes, `t:<workspace id>` when
-- one of its tokens is revoked or deleted, `q:<workspace id>` when a message is queued for it.
-- Heartbeat columns (active tasks, uptime, times) do not notify: they change every few
-- seconds and a replica's copy of them is bounded by the cache TTL.

CREATE OR REPLACE FUNCTION molecule_cache_workspace() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('molecule_cache', 'w:' || OLD.id::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('molecule_cache', 'w:' || NEW.id::text);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS molecule_cache_workspace_update ON workspaces;
CREATE TRIGGER molecule_cache_workspace_update AFTER UPDATE ON workspaces FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
       OR OLD.url IS DISTINCT FROM NEW.url
       OR OLD.parent_id IS DISTINCT FROM NEW.parent_id
       OR OLD.forwarded_to IS DISTINCT FROM NEW.forwarded_to
       OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.runtime IS DISTINCT FROM NEW.runtime
       OR OLD.tier IS DISTINCT FROM NEW.tier
       OR OLD.delivery_mode IS DISTINCT FROM NEW.delivery_mode
       OR OLD.workspace_access IS DISTINCT FROM NEW.workspace_access
       OR OLD.budget_limit IS DISTINCT FROM NEW.budget_limit
       OR OLD.max_concurrent_tasks IS DISTINCT FROM NEW.max_concurrent_tasks
       OR OLD.instance_id IS DISTINCT FROM NEW.instance_id
       OR OLD.platform_inbound_secret IS DISTINCT FROM NEW.platform_inbound_secret)
    EXECUTE FUNCTION molecule_cache_workspace();

DROP TRIGGER IF EXISTS molecule_cache_workspace_delete ON workspaces;
CREATE TRIGGER molecule_cache_workspace_delete AFTER DELETE ON workspaces FOR EACH ROW
    EXECUTE FUNCTION molecule_cache_workspace();

CREATE OR REPLACE FUNCTION molecule_cache_token() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('molecule_cache', 't:' || OLD.workspace_id::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('molecule_cache', 't:' || NEW.workspace_id::text);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS molecule_cache_token_revoke ON workspace_auth_tokens;
CREATE TRIGGER molecule_cache_token_revoke AFTER UPDATE OF revoked_at ON workspace_auth_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION molecule_cache_token();

DROP TRIGGER IF EXISTS molecule_cache_token_delete ON workspace_auth_tokens;
CREATE TRIGGER molecule_cache_token_delete AFTER DELETE ON workspace_auth_tokens FOR EACH ROW
    EXECUTE FUNCTION molecule_cache_token();

CREATE OR REPLACE FUNCTION molecule_cache_queue() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('molecule_cache', 'q:' || NEW.workspace_id::text);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS molecule_cache_queue ON a2a_queue;
CREATE TRIGGER molecule_cache_queue AFTER INSERT OR UPDATE OF status ON a2a_queue FOR EACH ROW
    WHEN (NEW.status = 'queued')
    EXECUTE FUNCTION molecule_cache_queue();

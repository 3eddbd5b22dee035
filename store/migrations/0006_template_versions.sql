-- Every write of a template is an immutable version. `templates` keeps one row per template:
-- its `version` is the active version (always the newest: a rollback writes a new version
-- copying an older one), and its name and content mirror that version.
CREATE TABLE template_versions (
    tenant_id       TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    version         BIGINT NOT NULL,
    name            TEXT NOT NULL,
    category        TEXT NOT NULL,
    default_locale  TEXT NOT NULL,
    content         TEXT NOT NULL,
    restored_from   BIGINT,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version)
);

-- Templates written before versions existed become their own first recorded version.
INSERT INTO template_versions
    (tenant_id, template_id, version, name, category, default_locale, content, restored_from,
     created_at_ms)
SELECT tenant_id, template_id, version, name, 'transactional', 'en', content, NULL, updated_at_ms
FROM templates;

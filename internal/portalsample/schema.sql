-- Copy of /work/shared/fixtures/portal/schema.sql (the portal's PostgreSQL tables), changed in
-- ONE place so the same file runs on SQLite and PostgreSQL: events.created_on defaulted to
-- (now() AT TIME ZONE 'utc'), which SQLite cannot parse; it is DEFAULT CURRENT_TIMESTAMP here.
-- The seed always sets created_on explicitly, so the default never decides a value in tests.
-- Portal tables used by Herald's enricher tests (PostgreSQL).
CREATE TABLE IF NOT EXISTS users (
  id uuid PRIMARY KEY, email text NOT NULL UNIQUE, first_name text NOT NULL, last_name text NOT NULL);
CREATE TABLE IF NOT EXISTS domains (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS data_product_types (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS roles (id uuid PRIMARY KEY, name text NOT NULL, scope text NOT NULL);
CREATE TABLE IF NOT EXISTS data_products (
  id uuid PRIMARY KEY, name text NOT NULL, namespace text NOT NULL UNIQUE, description text,
  domain_id uuid REFERENCES domains(id), type_id uuid REFERENCES data_product_types(id),
  status text NOT NULL DEFAULT 'active');                       -- pending | active | archived
CREATE TABLE IF NOT EXISTS data_product_settings (
  id uuid PRIMARY KEY, data_product_id uuid NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  name text NOT NULL, value text NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (                           -- output ports
  id uuid PRIMARY KEY, name text NOT NULL, namespace text NOT NULL,
  data_product_id uuid NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  access_type text NOT NULL DEFAULT 'restricted',               -- restricted | unrestricted | private
  status text NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS data_outputs (                       -- technical assets
  id uuid PRIMARY KEY, name text NOT NULL, namespace text NOT NULL,
  owner_id uuid NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  platform_id text NOT NULL, service_id text NOT NULL, configuration jsonb NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS data_products_datasets (             -- input ports (access links)
  id uuid PRIMARY KEY, data_product_id uuid NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  dataset_id uuid NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
  status text NOT NULL,                                         -- pending | approved | denied | revoked | cancelled | expired
  justification text, requested_by_id uuid REFERENCES users(id), requested_on timestamptz,
  approved_by_id uuid REFERENCES users(id), approved_on timestamptz, valid_until timestamptz);
CREATE TABLE IF NOT EXISTS data_outputs_datasets (              -- technical asset published on an output port
  id uuid PRIMARY KEY, data_output_id uuid NOT NULL REFERENCES data_outputs(id) ON DELETE CASCADE,
  dataset_id uuid NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, status text NOT NULL);
CREATE TABLE IF NOT EXISTS role_assignments_data_product (
  id uuid PRIMARY KEY, data_product_id uuid NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users(id), role_id uuid REFERENCES roles(id),
  decision text NOT NULL);                                      -- pending | approved | denied
CREATE TABLE IF NOT EXISTS events (                             -- the portal's audit records
  id uuid PRIMARY KEY, name text NOT NULL,
  subject_id uuid, subject_type text,                           -- data_product | dataset | data_output | user
  target_id uuid, target_type text,
  actor_id uuid NOT NULL,
  deleted_subject_identifier text, deleted_target_identifier text,
  created_on timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,     -- portal: (now() AT TIME ZONE 'utc')
  updated_on timestamptz);
CREATE INDEX IF NOT EXISTS events_created_on ON events (created_on);

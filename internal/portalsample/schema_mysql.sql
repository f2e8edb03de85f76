-- The portal's tables on MySQL/MariaDB: schema.sql with its types spelled as MySQL
-- spells them (uuid -> CHAR(36), timestamptz -> DATETIME(6) holding UTC, jsonb -> JSON,
-- a UNIQUE text -> VARCHAR(255)). Keep it in step with schema.sql.

CREATE TABLE IF NOT EXISTS users (
  id CHAR(36) PRIMARY KEY, email VARCHAR(255) NOT NULL UNIQUE, first_name text NOT NULL, last_name text NOT NULL);
CREATE TABLE IF NOT EXISTS domains (id CHAR(36) PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS data_product_types (id CHAR(36) PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS roles (id CHAR(36) PRIMARY KEY, name text NOT NULL, scope text NOT NULL);
CREATE TABLE IF NOT EXISTS data_products (
  id CHAR(36) PRIMARY KEY, name text NOT NULL, namespace VARCHAR(255) NOT NULL UNIQUE, description text,
  domain_id CHAR(36) REFERENCES domains(id), type_id CHAR(36) REFERENCES data_product_types(id),
  status text NOT NULL DEFAULT 'active');                       -- pending | active | archived
CREATE TABLE IF NOT EXISTS data_product_settings (
  id CHAR(36) PRIMARY KEY, data_product_id CHAR(36) NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  name text NOT NULL, value text NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (                           -- output ports
  id CHAR(36) PRIMARY KEY, name text NOT NULL, namespace text NOT NULL,
  data_product_id CHAR(36) NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  access_type text NOT NULL DEFAULT 'restricted',               -- restricted | unrestricted | private
  status text NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS data_outputs (                       -- technical assets
  id CHAR(36) PRIMARY KEY, name text NOT NULL, namespace text NOT NULL,
  owner_id CHAR(36) NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  platform_id text NOT NULL, service_id text NOT NULL, configuration JSON NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS data_products_datasets (             -- input ports (access links)
  id CHAR(36) PRIMARY KEY, data_product_id CHAR(36) NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  dataset_id CHAR(36) NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
  status text NOT NULL,                                         -- pending | approved | denied | revoked | cancelled | expired
  justification text, requested_by_id CHAR(36) REFERENCES users(id), requested_on DATETIME(6),
  approved_by_id CHAR(36) REFERENCES users(id), approved_on DATETIME(6), valid_until DATETIME(6));
CREATE TABLE IF NOT EXISTS data_outputs_datasets (              -- technical asset published on an output port
  id CHAR(36) PRIMARY KEY, data_output_id CHAR(36) NOT NULL REFERENCES data_outputs(id) ON DELETE CASCADE,
  dataset_id CHAR(36) NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, status text NOT NULL);
CREATE TABLE IF NOT EXISTS role_assignments_data_product (
  id CHAR(36) PRIMARY KEY, data_product_id CHAR(36) NOT NULL REFERENCES data_products(id) ON DELETE CASCADE,
  user_id CHAR(36) NOT NULL REFERENCES users(id), role_id CHAR(36) REFERENCES roles(id),
  decision text NOT NULL);                                      -- pending | approved | denied
CREATE TABLE IF NOT EXISTS events (                             -- the portal's audit records
  id CHAR(36) PRIMARY KEY, name text NOT NULL,
  subject_id CHAR(36), subject_type text,                           -- data_product | dataset | data_output | user
  target_id CHAR(36), target_type text,
  actor_id CHAR(36) NOT NULL,
  deleted_subject_identifier text, deleted_target_identifier text,
  created_on DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),     -- portal: (now() AT TIME ZONE 'utc')
  updated_on DATETIME(6));
CREATE INDEX IF NOT EXISTS events_created_on ON events (created_on);

-- The showcase: the fixture's story continued for one more day, so that every event type of the
-- catalogue and every rule (ignored actions, a role assignment awaiting approval, deleted entities
-- named from the audit trail, both orientations of a decision) occurs at least once. Applied after
-- schema.sql and seed.sql. As in the seed, entity rows show the state AFTER every audited action.
INSERT INTO data_products VALUES
 ('10000000-0000-4000-8000-000000000004','Forecast','sales-forecast','Demand forecast',
  '00000000-0000-4000-8000-0000000000d1','00000000-0000-4000-8000-0000000000a1','active');
UPDATE data_products SET description = 'Predicts churn from order history'
 WHERE id = '10000000-0000-4000-8000-000000000002';
INSERT INTO datasets VALUES
 ('20000000-0000-4000-8000-000000000003','Churn scores','churn-scores',
  '10000000-0000-4000-8000-000000000002','restricted','active');
UPDATE data_outputs SET configuration = '{"bucket":"sales","prefix":"orders/v2/"}'
 WHERE id = '30000000-0000-4000-8000-000000000001';
INSERT INTO data_outputs VALUES
 ('30000000-0000-4000-8000-000000000003','orders_events','sales-orders-events',
  '10000000-0000-4000-8000-000000000001','aws','glue','{"database":"sales","table":"order_events"}','active');
DELETE FROM data_outputs_datasets WHERE id = '31000000-0000-4000-8000-000000000001';
INSERT INTO data_outputs_datasets VALUES
 ('31000000-0000-4000-8000-000000000002','30000000-0000-4000-8000-000000000003',
  '20000000-0000-4000-8000-000000000001','approved');
UPDATE data_products_datasets SET status = 'cancelled', justification = 'Retrain churn model',
  requested_by_id = '00000000-0000-4000-8000-000000000003', requested_on = '2026-11-02T09:14:00Z',
  approved_by_id = NULL, approved_on = NULL
 WHERE id = '40000000-0000-4000-8000-000000000001';
INSERT INTO data_products_datasets VALUES
 ('40000000-0000-4000-8000-000000000002','10000000-0000-4000-8000-000000000001',
  '20000000-0000-4000-8000-000000000003','approved','Join churn scores to orders',
  '00000000-0000-4000-8000-000000000001','2026-11-02T09:16:00Z',
  '00000000-0000-4000-8000-000000000003','2026-11-02T09:17:00Z','2027-11-02T00:00:00Z'),
 ('40000000-0000-4000-8000-000000000003','10000000-0000-4000-8000-000000000004',
  '20000000-0000-4000-8000-000000000001','denied','Forecast demand',
  '00000000-0000-4000-8000-000000000002','2026-11-02T09:19:00Z', NULL, NULL, NULL);
UPDATE role_assignments_data_product SET role_id = '00000000-0000-4000-8000-0000000000f1'
 WHERE id = '50000000-0000-4000-8000-000000000002';
INSERT INTO role_assignments_data_product VALUES
 ('50000000-0000-4000-8000-000000000003','10000000-0000-4000-8000-000000000002',
  '00000000-0000-4000-8000-000000000003','00000000-0000-4000-8000-0000000000f2','approved'),
 ('50000000-0000-4000-8000-000000000004','10000000-0000-4000-8000-000000000002',
  '00000000-0000-4000-8000-000000000002','00000000-0000-4000-8000-0000000000f2','denied'),
 ('50000000-0000-4000-8000-000000000005','10000000-0000-4000-8000-000000000004',
  '00000000-0000-4000-8000-000000000001','00000000-0000-4000-8000-0000000000f1','pending');

INSERT INTO events (id,name,subject_id,subject_type,target_id,target_type,actor_id,
                    deleted_subject_identifier,deleted_target_identifier,created_on) VALUES
 ('f2f8278f-ed35-4a4a-bfdd-26d22a65f083','data_product_created','10000000-0000-4000-8000-000000000004','data_product',NULL,NULL,'00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:00:00Z'),
 ('a606d98f-8475-4a3c-8f42-3982e6210c30','data_product_updated','10000000-0000-4000-8000-000000000002','data_product',NULL,NULL,'00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:01:00Z'),
 ('3de1736c-7705-4733-a7ca-065df08556ab','dataset_created','20000000-0000-4000-8000-000000000003','dataset','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:02:00Z'),
 ('81684e29-2e84-42f5-b81d-3290d4c34312','dataset_updated','20000000-0000-4000-8000-000000000001','dataset','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:03:00Z'),
 -- an output-port role given to Ana: output_port_member.added
 ('3d745c36-5f95-44fe-bd38-f9f06abddedb','dataset_role_assignment_created','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001','user','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:04:00Z'),
 ('482028dd-d221-4c06-a7f8-a0f2cdbf8cd5','data_output_updated','30000000-0000-4000-8000-000000000001','data_output','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:05:00Z'),
 ('f4371114-406b-4e52-9055-e2d4cc9693c9','data_output_created','30000000-0000-4000-8000-000000000003','data_output','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:06:00Z'),
 -- a publication request: ignored on purpose; its approval is the event
 ('ad6a6b9c-869f-458e-ae01-22111d7241fa','data_output_dataset_link_requested','30000000-0000-4000-8000-000000000003','data_output','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:07:00Z'),
 ('89c346c2-7684-4044-b801-5d2f2696187c','data_output_dataset_link_approved','30000000-0000-4000-8000-000000000003','data_output','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:08:00Z'),
 ('bec7eac9-24b7-448b-81ba-aad5c42f0f2f','data_output_dataset_link_removed','30000000-0000-4000-8000-000000000001','data_output','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:09:00Z'),
 -- an output port and a technical asset created and deleted: rows gone, names kept
 ('e024147b-9b79-4312-a2dc-d027417fda42','dataset_created','20000000-0000-4000-8000-000000000002','dataset','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:10:00Z'),
 ('fc7da371-0da7-4aa7-922b-5c0c44b38ef2','data_output_created','30000000-0000-4000-8000-000000000002','data_output','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:11:00Z'),
 -- no data product on the record: the owner comes from the audit row that created it
 ('56a5e64e-5983-4bb1-bd21-2f9df357ee27','data_output_removed','30000000-0000-4000-8000-000000000002','data_output',NULL,NULL,'00000000-0000-4000-8000-000000000001','orders_tmp',NULL,'2026-11-02T09:12:00Z'),
 ('95cb8555-2740-4720-95fa-3f88d5f0f467','dataset_removed','20000000-0000-4000-8000-000000000002','dataset','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000001','Orders raw',NULL,'2026-11-02T09:13:00Z'),
 -- Churn model asks again after the revocation, then withdraws
 ('acd3d94e-0d51-43d8-9ca8-8b8d9b748f7f','data_product_dataset_link_requested','10000000-0000-4000-8000-000000000002','data_product','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:14:00Z'),
 ('1daac05a-be83-480d-919d-736513c44c6a','data_product_dataset_link_cancelled','10000000-0000-4000-8000-000000000002','data_product','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:15:00Z'),
 -- Orders reads Churn scores: approved from the data product side (subject=data_product)
 ('92c13f19-d880-4dab-bf22-54d8e5052a24','data_product_dataset_link_requested','10000000-0000-4000-8000-000000000001','data_product','20000000-0000-4000-8000-000000000003','dataset','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:16:00Z'),
 ('58a31362-0402-408d-a322-297cb13e340d','data_product_dataset_link_approved','10000000-0000-4000-8000-000000000001','data_product','20000000-0000-4000-8000-000000000003','dataset','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:17:00Z'),
 -- Forecast asks for Churn scores, then deletes its request: the input port's row is gone
 ('7cdaea99-21a6-4cef-83a7-bcd8f0486798','data_product_dataset_link_requested','10000000-0000-4000-8000-000000000004','data_product','20000000-0000-4000-8000-000000000003','dataset','00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:18:00Z'),
 ('1fb1717d-b2ce-40b3-aee0-22565bb4b42b','data_product_dataset_link_removed','10000000-0000-4000-8000-000000000004','data_product','20000000-0000-4000-8000-000000000003','dataset','00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:18:30Z'),
 -- Forecast asks for Orders daily and is denied from the output-port side (orientation reversed)
 ('42128fa9-8eec-4865-a103-b1a960aeb1f1','data_product_dataset_link_requested','10000000-0000-4000-8000-000000000004','data_product','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:19:00Z'),
 ('cb6055e7-3e8f-407c-8602-8d6e210257a1','data_product_dataset_link_denied','20000000-0000-4000-8000-000000000001','dataset','10000000-0000-4000-8000-000000000004','data_product','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:20:00Z'),
 ('f2a6ab6d-d050-43f5-a826-7c2f3673508c','data_product_role_assignment_updated','10000000-0000-4000-8000-000000000001','data_product','00000000-0000-4000-8000-000000000002','user','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:21:00Z'),
 -- a request to join (ignored on purpose) and its approval (the event)
 ('fc565b5b-917c-464e-a644-8a800cd1d0a4','data_product_role_assignment_requested','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000003','user','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:22:00Z'),
 ('34b405cf-e919-4864-93aa-12ed91e42676','data_product_role_assignment_approved','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000003','user','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:23:00Z'),
 -- a request to join, denied: both ignored on purpose
 ('f8b89f91-e41a-4453-b8db-c92ebca9e8d9','data_product_role_assignment_requested','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000002','user','00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:24:00Z'),
 ('3f6899a7-b9d0-46aa-b341-f6f126144a2e','data_product_role_assignment_denied','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000002','user','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:25:00Z'),
 -- created by someone who may not approve it: pending, so nobody joined yet (no event)
 ('d5940f08-deaa-4ade-9d73-9b70353749de','data_product_role_assignment_created','10000000-0000-4000-8000-000000000004','data_product','00000000-0000-4000-8000-000000000001','user','00000000-0000-4000-8000-000000000002',NULL,NULL,'2026-11-02T09:26:00Z'),
 ('d396de99-81db-41d5-affa-f0df0fa645b6','dataset_setting_updated','20000000-0000-4000-8000-000000000003','dataset','10000000-0000-4000-8000-000000000002','data_product','00000000-0000-4000-8000-000000000003',NULL,NULL,'2026-11-02T09:27:00Z'),
 -- Ana's output-port role changes, then is taken away (the portal's tables hold no output-port roles)
 ('6bf8c342-fe64-49f1-80a7-0ac9f649739c','dataset_role_assignment_updated','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001','user','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:28:00Z'),
 ('f8b74820-47f5-440c-b6dd-c116db615a79','dataset_role_assignment_removed','20000000-0000-4000-8000-000000000001','dataset','00000000-0000-4000-8000-000000000001','user','00000000-0000-4000-8000-000000000001',NULL,NULL,'2026-11-02T09:29:00Z');

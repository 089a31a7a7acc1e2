import dagster as dg

#: One partition per LEA, added by the inbox sensor the first time an LEA's folder has an upload.
lea_partitions = dg.DynamicPartitionsDefinition(name="lea")

//! kith-sim: will run many `kith_protocol` sync engines in virtual time, under loss,
//! duplication, partitions, churn, crashes and clock skew; a placeholder for now.

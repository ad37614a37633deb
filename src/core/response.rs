//! Response figures (DESIGN §4): response, arrival and restore times of each alarm, and
//! response timeliness over a set of alarms.

//! The node switch: datapath, OpenFlow server, node agent.

//! palaver-load: the load generator and benchmark driver.

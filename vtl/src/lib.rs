//! The virtual tape library (SMC-3 changer, SSC-3 drives). Built in issue 6.

"""Serial IMU protocols: Xbus (MTi), WitMotion serial, imuflow line protocol; port discovery."""

"""BLE IMU protocols: Movella DOT and WitMotion BLE 5.0 payloads; bleak scan discovery."""

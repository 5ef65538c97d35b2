// imuflow_imu: reference firmware for the imuflow line protocol v1 (docs/line_protocol.md).
//
// Board: any Arduino-class board with hardware I2C (Uno, Nano, Leonardo, ESP32, RP2040).
// Sensor: MPU-6050 / MPU-6500 / MPU-9250 (accel + gyro part) at I2C address 0x68
// (AD0 low; 0x69 if AD0 is high). Wiring: VCC, GND, SDA, SCL (Uno: A4/A5).
// Output, one line per sample at RATE_HZ over Serial at BAUD:
//   $IMU,<id>,<t_us>,ax,ay,az,gx,gy,gz*hh\r\n
// acc in m/s^2 and angular rate in rad/s in the chip's axes (sensor frame),
// t_us = micros() at the sample read (wraps at 2^32, the receiver unwraps),
// hh = XOR of all characters between '$' and '*' as two upper-case hex digits.

#include <Wire.h>

// ---- configuration ----
#define SENSOR_ID "imu01"       // 1-16 chars of [A-Za-z0-9_-]
#define RATE_HZ 100             // output rate; 115200 baud carries ~1400 lines/s max
#define BAUD 115200
#define MPU_ADDR 0x68
#define DIGITS 4                // decimals per value (>= 4 recommended)

// Full-scale ranges: ACCEL_CONFIG 0x10 = +-8 g (4096 LSB/g),
// GYRO_CONFIG 0x10 = +-1000 deg/s (32.8 LSB per deg/s).
const uint8_t ACCEL_CFG = 0x10;
const uint8_t GYRO_CFG = 0x10;
const float G0 = 9.80665f;
const float ACC_SCALE = G0 / 4096.0f;                      // m/s^2 per LSB
const float GYR_SCALE = (3.14159265358979f / 180.0f) / 32.8f;  // rad/s per LSB

const unsigned long PERIOD_US = 1000000UL / RATE_HZ;
unsigned long next_us;

static void writeReg(uint8_t reg, uint8_t value) {
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(reg);
  Wire.write(value);
  Wire.endTransmission();
}

static bool readRaw(int16_t raw[7]) {
  // 14 bytes from ACCEL_XOUT_H: ax, ay, az, temperature, gx, gy, gz (big-endian i16)
  Wire.beginTransmission(MPU_ADDR);
  Wire.write(0x3B);
  if (Wire.endTransmission(false) != 0) return false;
  if (Wire.requestFrom((uint8_t)MPU_ADDR, (uint8_t)14) != 14) return false;
  for (int i = 0; i < 7; i++) {
    uint8_t hi = Wire.read();
    uint8_t lo = Wire.read();
    raw[i] = (int16_t)((hi << 8) | lo);
  }
  return true;
}

// Append a float with DIGITS decimals (dtostrf: AVR has no printf %f).
static char *appendFloat(char *p, float v) {
  *p++ = ',';
  dtostrf(v, 1, DIGITS, p);
  while (*p) p++;
  return p;
}

void setup() {
  Serial.begin(BAUD);
  Wire.begin();
  Wire.setClock(400000);
  writeReg(0x6B, 0x01);        // PWR_MGMT_1: wake up, PLL with X gyro clock
  writeReg(0x1A, 0x03);        // CONFIG: DLPF ~44 Hz
  writeReg(0x19, 0x00);        // SMPLRT_DIV: 1 kHz internal sample rate
  writeReg(0x1B, GYRO_CFG);
  writeReg(0x1C, ACCEL_CFG);
  delay(100);
  Serial.print(F("# imuflow_imu v1 MPU-6050 id=" SENSOR_ID " rate_hz="));
  Serial.println(RATE_HZ);
  next_us = micros();
}

void loop() {
  if ((long)(micros() - next_us) < 0) return;
  next_us += PERIOD_US;
  int16_t raw[7];
  unsigned long t_us = micros();
  if (!readRaw(raw)) {
    Serial.println(F("# i2c read failed"));  // comment line: receivers skip it
    return;
  }
  char line[128];
  char *p = line;
  *p++ = '$';
  p += sprintf(p, "IMU,%s,%lu", SENSOR_ID, t_us);
  p = appendFloat(p, raw[0] * ACC_SCALE);
  p = appendFloat(p, raw[1] * ACC_SCALE);
  p = appendFloat(p, raw[2] * ACC_SCALE);
  p = appendFloat(p, raw[4] * GYR_SCALE);
  p = appendFloat(p, raw[5] * GYR_SCALE);
  p = appendFloat(p, raw[6] * GYR_SCALE);
  uint8_t cs = 0;
  for (char *q = line + 1; q < p; q++) cs ^= (uint8_t)*q;
  sprintf(p, "*%02X\r\n", cs);
  Serial.print(line);
}
